"""The e-stop gates every actuator: pressed between the arm's motions of a place, neither another
trajectory nor the gripper is commanded (the gripper once opened after the e-stop, 2 of 2)."""

from __future__ import annotations

import pytest

from ivl_embodied.plan.safety import SafetyGate
from ivl_embodied.plan.schema import format_plan
from ivl_embodied.robot.executor import Executor

pytest.importorskip("mujoco")


def test_estop_pressed_during_a_place_stops_the_gripper_too():
    from ivl_embodied.sim.oracle import oracle_plan
    from ivl_embodied.sim.sim_robot import SimRobot
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld

    task = next(t for t in load_split("val") if t.goal.type == "place_in")
    world = SimWorld(scene_for(task))
    gate = SafetyGate()
    log = []

    class PressedDuringPlace(SimRobot):
        def send_trajectory(self, traj):
            log.append("trajectory")
            res = super().send_trajectory(traj)
            if log.count("gripper") == 2 and log.count("trajectory") == 5:  # open, 2 moves, close, lift,
                gate.engage_estop("pressed while lowering into the container")  # carry, lower: release next
            return res

        def send_gripper(self, cmd):
            log.append("gripper")
            return super().send_gripper(cmd)

    try:
        world.settle()
        robot = PressedDuringPlace(world)
        report = Executor(robot, gate).execute(format_plan(oracle_plan(world, task.goal)), robot.get_observation())
        pressed_at = [i for i, c in enumerate(log) if c == "trajectory"][4]
        assert not report.ok and "e-stop latched" in report.reason, report
        assert log[pressed_at + 1:] == [], f"commands after the e-stop: {log[pressed_at + 1:]}"
    finally:
        world.close()
