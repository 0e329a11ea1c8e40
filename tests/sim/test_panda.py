"""A Franka Panda, from its robot file and description, in our world: the executor's IK and skills on its own
kinematics, the simulator's controllers on its joints; one episode of each goal with the oracle's plans."""

from __future__ import annotations

import pytest

pytest.importorskip("mujoco")


def test_the_panda_is_ready_for_the_simulator_and_named_by_its_own_joints():
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld, sim_arm

    arm = sim_arm("panda")
    assert arm.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8)) and arm.push_lean > 0
    world = SimWorld(scene_for(load_split("val")[0]), arm)
    try:
        world.settle()
        assert abs(world.gripper_opening() - 0.08) < 0.002  # starts open
        assert abs(world.tcp_pos()[2] - 0.55) < 0.03  # at home: up and back, out of the camera's way
    finally:
        world.close()


def test_a_description_the_simulator_cannot_drive_is_refused(tmp_path):
    from ivl_embodied.sim.world import sim_arm

    robot = tmp_path / "r.yaml"
    robot.write_text("name: half\ndescription: sim/assets/panda/panda.xml\njoints: [panda_joint1, panda_joint2]\n"
                     "tool_frame: tcp\nhome: [0, 0]\n")  # and no gripper
    with pytest.raises(ValueError, match="not ready for our simulator.*its gripper joints"):
        sim_arm(robot)


@pytest.mark.parametrize("goal", ["place_in", "stack", "push_to"])
def test_the_panda_does_one_task_of_each_kind_with_the_oracles_plans(goal):
    from ivl_embodied.sim.episode import run_episode
    from ivl_embodied.sim.planners import make_planner
    from ivl_embodied.sim.tasks import load_split
    from ivl_embodied.sim.world import sim_arm

    task = next(t for t in load_split("heldout") if t.goal.type == goal and "cylinder" in t.instruction) \
        if goal == "push_to" else next(t for t in load_split("heldout") if t.goal.type == goal)
    result = run_episode(task, make_planner("oracle"), arm=sim_arm("panda"))
    assert result.success and not result.false_success, result.to_dict()
