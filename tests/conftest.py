"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

# MuJoCo picks its GL backend when it is first imported; tests may import it before
# ivl_embodied.sim gets to choose, so choose here (headless EGL, as scripts/test.sh does).
os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parent.parent

# One random DDS domain per test run, so parallel runs on the same host never cross.
DDS_DOMAIN_ID = random.SystemRandom().randint(100, 200)


@pytest.fixture(autouse=True)
def _own_ros_home(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own ROS_HOME: an e-stop one test latches (the latch outlives the executor, in
    $ROS_HOME/ivl_embodied/estop_latched) never stops another test's executor."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path_factory.mktemp("ros_home")))


@pytest.fixture
def loopback_dds(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Loopback-only Cyclone DDS on this run's domain; returns an env for child processes."""
    pytest.importorskip("cyclonedds")
    from ivl_embodied.transport.factory import cyclone_config_uri

    monkeypatch.setenv("CYCLONEDDS_URI", cyclone_config_uri("loopback"))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DDS_DOMAIN_ID))
    monkeypatch.setenv("IVL_TRANSPORT", "cyclonedds")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny InternVL3.5 saved with transformers' own save_pretrained (56-px tiles, no ViR)."""
    from ivl_embodied.checkpoints.tiny import save_tiny_internvl

    return save_tiny_internvl(tmp_path_factory.mktemp("tiny") / "internvl", seed=0, tile_size=56)


@pytest.fixture(scope="session")
def tiny_flash_ckpt(tmp_path_factory):
    """The same with Flash extras (mlp2 + router) under model.mlp2.* / model.vision_router.*."""
    from ivl_embodied.checkpoints.tiny import save_tiny_internvl

    return save_tiny_internvl(tmp_path_factory.mktemp("flash") / "internvl", seed=1, tile_size=56, with_vir=True)


# Models loaded from the shared tiny checkpoints, once per session.
@pytest.fixture(scope="session")
def tiny_planner(tiny_ckpt):
    from ivl_embodied.checkpoints.internvl import load_language

    return load_language(tiny_ckpt)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_ckpt):
    from ivl_embodied.checkpoints.internvl import load_vision

    return load_vision(tiny_ckpt)


@pytest.fixture(scope="session")
def flash_encoder(tiny_flash_ckpt):
    from ivl_embodied.checkpoints.internvl import load_vision

    return load_vision(tiny_flash_ckpt)
