"""A UR5e with a Robotiq 2F-85, from its robot file and description, in our world. The 2F-85 is a linkage: one
driven knuckle joint in rad, its opening given by the robot file's table, which must agree with the description's
own geometry; its pushes and grasps with the oracle's plans."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

# the linkage as the 2F-85's URDF mimics it: each joint follows the driven knuckle with this multiplier
MIMIC = {"robotiq_85_left_knuckle_joint": 1, "robotiq_85_right_knuckle_joint": 1,
         "robotiq_85_left_inner_knuckle_joint": 1, "robotiq_85_right_inner_knuckle_joint": 1,
         "robotiq_85_left_finger_tip_joint": -1, "robotiq_85_right_finger_tip_joint": -1}


def test_the_opening_table_agrees_with_the_linkage_in_the_description():
    import mujoco

    from ivl_embodied.robot.arm import load_arm

    arm = load_arm("ur5e")
    m = arm.load_model()
    d = mujoco.MjData(m)
    for q in np.linspace(0.0, 0.8, 17):
        for joint, k in MIMIC.items():
            d.qpos[m.joint(joint).qposadr[0]] = k * q
        mujoco.mj_kinematics(m, d)
        hand = d.body("hand")
        to_hand = hand.xmat.reshape(3, 3).T
        left, right = (to_hand @ (d.geom(f"finger_{s}_pad").xpos - hand.xpos) for s in ("left", "right"))
        gap = abs(left[1] - right[1]) - 2 * m.geom("finger_left_pad").size[1]  # between the pads' faces
        assert abs(arm.opening([q]) - max(gap, 0.0)) < 0.0015, (q, arm.opening([q]), gap)
        if q < 0.75:  # and back: the joint position for that opening
            assert abs(arm.gripper_position(arm.opening([q])) - q) < 1e-6 or arm.opening([q]) > arm.max_opening


def test_the_ur5e_starts_open_at_home_and_reports_its_knuckle_joint():
    from ivl_embodied.sim.controller import JointTrajectoryController
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld, sim_arm

    arm = sim_arm("ur5e")
    assert arm.gripper_joints == ("robotiq_85_left_knuckle_joint",) and arm.joint_names[0] == "shoulder_pan_joint"
    world = SimWorld(scene_for(load_split("val")[0]), arm)
    try:
        world.settle()
        assert abs(world.gripper_opening() - 0.085) < 0.002  # starts open
        assert abs(world.tcp_pos()[2] - 0.55) < 0.03  # at home: up and back, out of the camera's way
        JointTrajectoryController(world).command_gripper(0.04)
        world.step(world.steps_for(1.0))
        assert abs(world.gripper_opening() - 0.04) < 0.002  # the linkage follows the commanded opening
        assert abs(world.data.qpos[world.finger_qpos_adr[0]] - arm.gripper_position(0.04)) < 0.01
    finally:
        world.close()


@pytest.mark.parametrize("goal", ["stack", "push_to"])
def test_the_ur5e_does_a_task_with_the_oracles_plans(goal):
    from ivl_embodied.sim.episode import run_episode
    from ivl_embodied.sim.planners import make_planner
    from ivl_embodied.sim.tasks import load_split
    from ivl_embodied.sim.world import sim_arm

    task = next(t for t in load_split("heldout") if t.goal.type == goal and "cylinder" in t.instruction)
    result = run_episode(task, make_planner("oracle"), arm=sim_arm("ur5e"))
    assert result.success and not result.false_success, result.to_dict()
