"""A dry run checks and grounds the plan, says where each step would act, and commands nothing."""

from __future__ import annotations

import numpy as np
import pytest

from ivl_embodied.plan.schema import format_plan
from ivl_embodied.robot.executor import Executor, ExecutorConfig

pytest.importorskip("mujoco")


def test_a_dry_run_grounds_every_step_reports_the_poses_and_moves_nothing():
    from ivl_embodied.sim.oracle import oracle_plan
    from ivl_embodied.sim.sim_robot import SimRobot
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld

    task = next(t for t in load_split("val") if t.goal.type == "place_in")
    world = SimWorld(scene_for(task))
    commands = []

    class Recording(SimRobot):
        def send_trajectory(self, traj):
            commands.append("trajectory")
            return super().send_trajectory(traj)

        def send_gripper(self, cmd):
            commands.append("gripper")
            return super().send_gripper(cmd)

    try:
        world.settle()
        robot = Recording(world)
        plan = oracle_plan(world, task.goal)
        heard = []
        q0 = world.arm_q().copy()
        report = Executor(robot, config=ExecutorConfig(dry_run=True)).execute(
            format_plan(plan), robot.get_observation(), on_grounded=lambda p, poses: heard.append((p, poses)))
        assert commands == [] and np.allclose(world.arm_q(), q0)
        assert report.stage == "dry_run" and not report.ok and not report.moved, report
        assert "nothing was sent to the robot" in report.reason
        ((p, poses),) = heard
        assert p == plan and len(poses) == len(plan.steps) == 2
        # the pick's pose is the object's, the place's the container's: where the simulator has them
        pick, place = (np.array(x) for x in poses)
        assert np.linalg.norm(pick[:2] - world.body_pos(_body(world, plan.steps[0].object))[:2]) < 0.02
        assert np.linalg.norm(place[:2] - world.body_pos(_body(world, plan.steps[1].target))[:2]) < 0.03
        assert f"{pick[0]:.3f}" in report.reason
        # the same plan, not a dry run, goes through on_grounded first and then moves
        heard.clear()
        report = Executor(robot).execute(format_plan(plan), robot.get_observation(),
                                         on_grounded=lambda p, poses: heard.append(list(commands)))
        assert heard == [[]] and commands and report.moved
    finally:
        world.close()


def _body(world, phrase: str) -> str:
    color, kind = phrase.split()
    return world.scene.find(color, kind).name
