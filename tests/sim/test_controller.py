"""The simulated controller enforces its own limits, whoever commands it (a foreign participant's
8.94 rad/s trajectory, a target beyond a joint limit and a move while e-stopped were once executed)."""

from __future__ import annotations

import numpy as np
import pytest

from ivl_embodied.robot.interface import JointTrajectory
from ivl_embodied.sim.controller import CONTROLLER_SPEED, JointTrajectoryController
from ivl_embodied.sim.world import ARM, ARM_JOINTS, SimWorld

pytest.importorskip("mujoco")


@pytest.fixture
def controller():
    from ivl_embodied.sim.tasks import load_split, scene_for

    world = SimWorld(scene_for(load_split("val")[0]))
    world.settle()
    yield JointTrajectoryController(world)
    world.close()


def _move(controller, dq, duration):
    q0 = controller.world.arm_q()
    return JointTrajectory.through(ARM_JOINTS, np.stack([q0, q0 + dq]), np.array([0.0, duration]))


def test_foreign_trajectories_beyond_the_limits_are_refused(controller):
    n = len(ARM_JOINTS)
    fast = np.zeros(n)
    fast[0] = 1.62  # 1.62 rad in 0.27 s: peak 8.94 rad/s with the rest-to-rest cubic
    why = controller.command(_move(controller, fast, 0.27))
    assert why is not None and "speed" in why and f"limit {CONTROLLER_SPEED['max_joint_speed']}" in why
    lower, upper = ARM.joint_limits
    beyond = np.zeros(n)
    beyond[1] = upper[1] + 0.2 - controller.world.arm_q()[1]
    why = controller.command(_move(controller, beyond, 10.0))
    assert why is not None and ARM_JOINTS[1] in why and "outside" in why
    assert controller.active is None
    ok = np.zeros(n)
    ok[0] = 0.2
    assert controller.command(_move(controller, ok, 2.0)) is None  # within the limits: followed


def test_estopped_controller_holds_and_refuses_everything_until_released(controller):
    n = len(ARM_JOINTS)
    dq = np.zeros(n)
    dq[0] = 0.6
    assert controller.command(_move(controller, dq, 2.0)) is None
    for _ in range(200):  # 0.2 s into the move
        controller.update()
        controller.world.step(1)
    controller.estop("e-stop on /ivl/estop")
    q_stop = controller.world.arm_q().copy()
    for _ in range(1500):  # 1.5 s: the rest of the move would have gone 0.4 rad further
        controller.update()
        controller.world.step(1)
    assert np.abs(controller.world.arm_q() - q_stop).max() < 0.05
    assert "e-stopped" in controller.command(_move(controller, dq * 0, 1.0))
    with pytest.raises(ValueError, match="e-stopped"):
        controller.command_gripper(0.08)
    controller.release()
    assert controller.command(_move(controller, -dq / 3, 2.0)) is None
    controller.command_gripper(0.08)


def test_a_trajectory_is_taken_with_its_joints_in_any_order_and_refused_naming_foreign_ones(controller):
    dq = np.zeros(len(ARM_JOINTS))
    dq[0] = 0.2
    traj = _move(controller, dq, 1.0)
    order = list(reversed(range(len(ARM_JOINTS))))
    shuffled = JointTrajectory(tuple(ARM_JOINTS[i] for i in order), tuple(
        type(p)(tuple(p.positions[i] for i in order), tuple(p.velocities[i] for i in order), p.time_from_start)
        for p in traj.points))
    assert controller.command(shuffled) is None
    assert np.allclose(controller.goal, traj.points[-1].positions)  # joint1 moves, whatever the order
    foreign = JointTrajectory(("elbow",) + tuple(ARM_JOINTS[1:]), traj.points)
    assert "unknown ['elbow'], missing ['joint1']" in controller.command(foreign)
