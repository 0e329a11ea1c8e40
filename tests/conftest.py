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


@pytest.fixture
def operator_plan():
    """``run(node, plan, instruction, watch=())``: as a planner would, publish ``plan`` (an oracle plan) on
    /ivl/plan for the newest camera frame and wait for the task's final status; returns (the final TaskStatus, whether
    the simulator says the goal holds). ``watch``: (type, topic, list) subscriptions made first (what else to record).
    A missing frame, status or goal fails with what was seen."""
    from ivl_embodied.transport import msg_type
    from ivl_embodied.transport.convert import plan_to_msg, stamp_to_ns

    def run(node, plan, instruction, watch=(), timeout=120.0):
        statuses, frames, goal = [], [], []
        S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
        final = (S.STATE_SUCCEEDED, S.STATE_FAILED, S.STATE_REJECTED)
        plan_pub = node.create_publisher("ivl_embodied_msgs/msg/ActionPlan", "/ivl/plan")
        node.create_subscription("ivl_embodied_msgs/msg/TaskStatus", "/ivl/task_status", statuses.append)
        node.create_subscription("sensor_msgs/msg/Image", "/camera/color/image_raw",
                                 lambda m: frames.append(stamp_to_ns(m.header.stamp)), "sensor_data")
        node.create_subscription("std_msgs/msg/Bool", "/ivl/sim/goal_reached", lambda m: goal.append(m.data))
        for type_name, topic, seen in watch:
            node.create_subscription(type_name, topic, seen.append)
        node.wait_for_subscribers("/ivl/plan", timeout=timeout)
        assert node.spin_until(lambda: len(frames) >= 2 and bool(goal), timeout=60), "no frames/goal from sim_node"
        assert goal[-1] is False  # nothing done yet
        plan_pub.publish(plan_to_msg(plan, "t", instruction, "", embedding_stamp=frames[-1]))
        assert node.spin_until(lambda: any(s.state in final for s in statuses), timeout=timeout), \
            f"no final status: {[(s.state, s.message) for s in statuses]}"
        last = [s for s in statuses if s.state in final][-1]
        if last.state == S.STATE_SUCCEEDED:
            node.spin_until(lambda: goal[-1], timeout=10)
        return last, goal[-1]

    return run
