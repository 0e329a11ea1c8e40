"""The arm the executor drives comes from its per-arm file (config/robots/NAME.yaml) and its own description."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivl_embodied.robot.arm import load_arm, robot_configs

pytest.importorskip("mujoco")


def test_the_shipped_arm_loads_from_its_file_and_its_description_has_what_the_file_names():
    assert "ivl_arm6" in robot_configs()
    arm = load_arm("ivl_arm6")
    arm.check()
    assert arm.joint_names == tuple(f"joint{i}" for i in range(1, 7)) and arm.tcp_site == "tcp"
    assert arm.gripper_joints == ("finger_left_joint", "finger_right_joint") and arm.max_opening == 0.08
    lower, upper = arm.joint_limits  # from the description
    assert all(lo < h < hi for lo, h, hi in zip(lower, arm.home, upper, strict=True))
    assert load_arm(robot_configs()["ivl_arm6"]) == arm  # by file too


def _file(tmp_path, text):
    p = tmp_path / "arm.yaml"
    p.write_text(text)
    return p


GOOD = """name: mine
description: sim/assets/arm.xml
joints: [joint1, joint2, joint3, joint4, joint5, joint6]
tool_frame: tcp
home: [0, 0, 0, 0, 0, 0]
gripper: {joints: [finger_left_joint], max_opening: 0.05}
"""


@pytest.mark.parametrize("change, words", [
    (("name: mine", "nom: mine"), "unknown keys ['nom']; missing ['name']"),
    (("home: [0, 0, 0, 0, 0, 0]", "home: [0, 0]"), "home (0.0, 0.0) has 2 values for 6 joints"),
    (("sim/assets/arm.xml", "sim/assets/nope.xml"), "does not exist"),
    (("max_opening: 0.05", "max_opening: 5"), "max_opening must be a length in m"),
    (("max_opening: 0.05", "width: 0.05"), "gripper takes"),
])
def test_a_bad_robot_file_is_refused_naming_the_key_or_value(tmp_path, change, words):
    with pytest.raises((ValueError, FileNotFoundError), match=r"arm\.yaml: .*" + re.escape(words)):
        load_arm(_file(tmp_path, GOOD.replace(*change)))


def test_a_description_without_the_named_joints_or_tool_frame_is_refused(tmp_path):
    arm = load_arm(_file(tmp_path, GOOD))
    arm.check()
    with pytest.raises(ValueError, match=r"has no joint \['elbow'\]"):
        load_arm(_file(tmp_path, GOOD.replace("joint6]", "elbow]"))).check()
    with pytest.raises(ValueError, match="has no tool frame 'flange'"):
        load_arm(_file(tmp_path, GOOD.replace("tool_frame: tcp", "tool_frame: flange"))).check()


def test_an_unknown_robot_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match=r"no robot 'kuka': the shipped ones are \['ivl_arm6'"):
        load_arm("kuka")


URDF = Path(__file__).resolve().parents[1] / "data" / "panda_arm_hand.urdf"  # franka_description's, via robosuite


def test_a_urdf_description_gives_the_same_kinematics_as_the_simulators_model(tmp_path):
    """What robot_state_publisher publishes (franka_description's URDF) and our simulator's Panda MJCF put the tool
    in the same place for any joint angles."""
    import numpy as np

    from ivl_embodied.robot.arm import arm_from_urdf
    from ivl_embodied.robot.kinematics import ArmKinematics

    panda = load_arm("panda")
    described = arm_from_urdf(URDF.read_text(), panda, tmp_path)
    assert described.joint_limits == panda.joint_limits and described.description.parent == tmp_path
    ours, theirs = ArmKinematics(panda), ArmKinematics(described)
    lo, hi = map(np.array, panda.joint_limits)
    for q in np.random.default_rng(0).uniform(lo, hi, (20, len(lo))):
        (p1, r1), (p2, r2) = ours.fk(q), theirs.fk(q)
        assert np.abs(p1 - p2).max() < 1e-6 and np.abs(r1 - r2).max() < 1e-6


@pytest.mark.parametrize("text, words", [
    ("not xml <", "not XML"),
    ("<mujoco/>", "not a URDF"),
    (None, "no link 'panda_hand'"),
])
def test_a_urdf_that_cannot_describe_the_arm_is_refused(tmp_path, text, words):
    from ivl_embodied.robot.arm import arm_from_urdf

    if text is None:
        text = URDF.read_text().replace('"panda_hand"', '"gripper_base"')
    with pytest.raises(ValueError, match=words):
        arm_from_urdf(text, load_arm("panda"), tmp_path)
    with pytest.raises(ValueError, match="no urdf_tool"):
        arm_from_urdf(URDF.read_text(), load_arm("ivl_arm6"), tmp_path)


def test_a_linkage_gripper_maps_its_driven_joint_to_the_opening_through_its_table_and_back():
    ur5e, panda = load_arm("ur5e"), load_arm("panda")
    assert ur5e.gripper_joints == ("robotiq_85_left_knuckle_joint",)
    assert ur5e.opening([0.0]) == pytest.approx(0.086) and ur5e.opening([0.8]) == pytest.approx(0.0015)
    assert ur5e.opening([0.45]) == pytest.approx((0.0466 + 0.0356) / 2)  # linear between the table's points
    assert ur5e.gripper_position(0.0466) == pytest.approx(0.4) and ur5e.gripper_position(1.0) == pytest.approx(
        ur5e.gripper_position(0.085))  # clipped to the stroke
    assert ur5e.gripper_position(0.0) == 0.8  # closing: the knuckle to its end of travel
    # a parallel-jaw hand: each finger's travel, the opening their sum
    assert panda.opening([0.02, 0.02]) == pytest.approx(0.04) and panda.gripper_position(0.04) == pytest.approx(0.02)


@pytest.mark.parametrize("table, words", [
    ("[[0.0, 0.05], [0.8, 0.06]]", "openings falling"),
    ("[[0.0, 0.05]]", "at least two points"),
    ("[[0.0, 0.04], [0.8, 0.0]]", "max_opening 0.05 m is outside the opening table's 0.0000..0.0400 m"),
])
def test_a_bad_opening_table_is_refused(tmp_path, table, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        load_arm(_file(tmp_path, GOOD.replace("max_opening: 0.05}", f"max_opening: 0.05, opening_table: {table}}}")))
    two = GOOD.replace("[finger_left_joint]", "[finger_left_joint, finger_right_joint]")
    with pytest.raises(ValueError, match=r"one driven gripper joint.*got 2 joint\(s\)"):
        load_arm(_file(tmp_path, two.replace("max_opening: 0.05}", "opening_table: [[0, 0.06], [1, 0]]}")))
