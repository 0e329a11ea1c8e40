"""The main job: ``ivl-embodied demo`` runs the node graph on the simulated robot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")


def _demo(env, out, *extra):
    return subprocess.run([sys.executable, "-m", "ivl_embodied.cli", "demo", "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_demo_with_oracle_plans_succeeds_and_records(loopback_dds, tmp_path):
    res = _demo(loopback_dds, tmp_path, "--planner", "oracle", "--tasks", "2", "--realtime-factor", "3")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    (task,) = summary["tasks"]
    assert task["ok"] and task["status"] == "SUCCEEDED" and task["goal_reached"]
    assert (tmp_path / "task_002.mp4").stat().st_size > 10_000


@pytest.mark.slow
def test_demo_full_graph_with_an_untrained_planner_ends_cleanly(loopback_dds, tmp_path):
    """vision_node → planner_node → executor_node with random weights: the plan is nonsense, and
    the task must end with a named reason from the executor (not a hang, not a crash)."""
    from ivl_embodied.model.tiny import save_tiny_internvl

    ck = save_tiny_internvl(tmp_path / "ck", tile_size=56)
    res = _demo(loopback_dds, tmp_path / "out", "--planner", str(ck), "--tasks", "0", "--timeout", "90")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    (task,) = json.loads((tmp_path / "out" / "summary.json").read_text())["tasks"]
    assert not task["ok"] and not task["goal_reached"]
    assert task["status"] in ("FAILED", "REJECTED"), task
    assert task["message"].startswith("[") or "cannot ground" in task["message"], task["message"]
