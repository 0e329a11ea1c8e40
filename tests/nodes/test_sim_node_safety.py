"""sim_node's controllers, callbacks called directly: a trajectory whose commander falls silent is
stopped, an e-stop holds the arm and refuses everything until reset, and out-of-limit or malformed
commands are refused, whoever sends them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import trajectory_to_msg

pytest.importorskip("mujoco")


@pytest.fixture
def sim(loopback_dds):
    from ivl_embodied.nodes.sim_node import SimNode

    node = SimNode.create({"realtime_factor": 1.0})
    yield node
    node.shutdown()


def _move(sim, dq, duration=2.0):
    from ivl_embodied.robot.interface import JointTrajectory
    from ivl_embodied.sim.world import ARM_JOINTS

    q0 = sim.world.arm_q()
    target = q0.copy()
    target[0] += dq
    return trajectory_to_msg(JointTrajectory.through(ARM_JOINTS, np.stack([q0, target]), np.array([0.0, duration])))


def _run(sim, seconds, beat=False):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if beat:
            sim.on_heartbeat(None)
        sim.on_physics()
        time.sleep(0.01)


def test_a_trajectory_stops_when_the_executor_falls_silent(sim):
    sim.on_trajectory(_move(sim, 0.5))
    _run(sim, 0.3, beat=True)
    assert sim.controller.moving
    q_beat = sim.world.arm_q()[0]
    _run(sim, 1.2, beat=False)  # the executor was killed: no more heartbeats
    assert not sim.controller.moving
    q_held = sim.world.arm_q()[0]
    assert q_held - q_beat < 0.3  # the rest of the 0.5 rad move was not made
    _run(sim, 0.5)
    assert abs(sim.world.arm_q()[0] - q_held) < 0.02  # and it holds


def test_estop_holds_and_refuses_until_reset_on_the_estop_topic(sim, caplog):
    Bool = msg_type("std_msgs/msg/Bool")
    sim.on_estop(Bool(data=True), "/ivl/estop_state", reset=False)  # a restarted, still latched executor
    sim.on_trajectory(_move(sim, 0.2))
    sim.on_gripper(msg_type("std_msgs/msg/Float64MultiArray")(data=[0.04, 0.04]))
    assert "rejected trajectory: e-stopped" in caplog.text and "rejected gripper command: e-stopped" in caplog.text
    assert sim.controller.goal is not None and not sim.controller.moving
    sim.on_estop(Bool(data=False), "/ivl/estop_state", reset=False)  # the state topic never releases
    assert sim.controller.stopped is not None
    sim.on_estop(Bool(data=False), "/ivl/estop")
    sim.on_heartbeat(None)
    sim.on_trajectory(_move(sim, 0.2))
    assert sim.controller.moving


def test_foreign_out_of_limit_trajectory_is_refused(sim, caplog):
    sim.on_heartbeat(None)
    sim.on_trajectory(_move(sim, 1.62, duration=0.27))  # 8.94 rad/s peak
    assert "beyond the controller's limits" in caplog.text and not sim.controller.moving
