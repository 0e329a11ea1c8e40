"""The package as users install it: ``pip install`` without ``-e``, run from the install alone.

A wheel, ``pip install --target`` or a colcon build without ``--symlink-install`` lays the package
out without the source tree: everything it reads at run time (the arm's MJCF, task files, the
launch graph, the parameter file, the .msg files) must come with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("mujoco")
pytest.importorskip("cyclonedds")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("install") / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-compile", "--target", str(site), str(REPO)], check=True, timeout=300)
    return site


def _env(site: Path, loopback_dds: dict[str, str]) -> dict[str, str]:
    env = dict(loopback_dds)
    env["PYTHONPATH"] = str(site)  # the install alone: not the source tree
    return env


@pytest.mark.slow
def test_installed_package_runs_an_oracle_episode(installed, loopback_dds, tmp_path):
    script = textwrap.dedent(f"""
        import ivl_embodied
        from pathlib import Path
        assert Path(ivl_embodied.__file__).is_relative_to({str(installed)!r}), ivl_embodied.__file__
        from ivl_embodied.resources import share_path
        for rel in ("launch/graph.yaml", "config/ivl_embodied.yaml", "ivl_embodied_msgs/msg"):
            assert share_path(rel).is_relative_to({str(installed)!r}), share_path(rel)
        from ivl_embodied.sim.world import ARM_XML
        assert ARM_XML.is_relative_to({str(installed)!r}), ARM_XML
        from ivl_embodied.sim.episode import run_episode
        from ivl_embodied.sim.planners import make_planner
        from ivl_embodied.sim.tasks import load_split
        r = run_episode(load_split("heldout")[0], make_planner("oracle"))
        print("EPISODE", r.success, r.stage, r.reason)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(installed, loopback_dds),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "EPISODE True done" in out.stdout, out.stdout + out.stderr[-2000:]


@pytest.mark.slow
def test_installed_launcher_starts_the_robot_nodes(installed, loopback_dds, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ivl_embodied.cli", "launch", "--groups", "robot",
                          "--duration", "25"], cwd=tmp_path, env=_env(installed, loopback_dds),
                         capture_output=True, text=True, timeout=120)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    for node in ("sim_node", "executor_node"):
        assert f"{node} running on cyclonedds" in log, log[-3000:]
        assert f"{node} shut down cleanly" in log, log[-3000:]
