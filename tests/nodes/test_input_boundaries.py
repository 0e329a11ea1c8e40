"""Every callback is a boundary: messages that cannot be used are logged and dropped, the last good
state is kept, and the node (and its e-stop) keeps working. Callbacks called directly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import matrix_to_transform_stamped, ns_to_stamp


@pytest.fixture
def executor_node(loopback_dds):
    from ivl_embodied.nodes.executor_node import ExecutorNode

    node = ExecutorNode.create({})
    yield node
    node.shutdown()


def _joints(node, positions, velocities=(), stamp_ns=1_000):
    names = list(node.robot.arm_joint_names)
    return msg_type("sensor_msgs/msg/JointState")(
        header=msg_type("std_msgs/msg/Header")(stamp=ns_to_stamp(stamp_ns)), name=names,
        position=list(positions), velocity=list(velocities))


def test_non_finite_or_ragged_joint_states_are_dropped_and_the_estop_still_holds(executor_node, caplog):
    robot = executor_node.robot
    n = len(robot.arm_joint_names)
    robot._on_joints(_joints(executor_node, [0.1] * n))
    good = robot.get_observation(with_images=False).joint_state.position.copy()
    for bad in ([math.nan] * n, [0.2] * (n - 1), [math.inf] + [0.2] * (n - 1)):
        robot._on_joints(_joints(executor_node, bad, stamp_ns=2_000))
    robot._on_joints(_joints(executor_node, [0.2] * n, [math.nan] * n, stamp_ns=3_000))
    assert caplog.text.count("dropped joint state") == 4
    np.testing.assert_array_equal(robot.get_observation(with_images=False).joint_state.position, good)
    sent = []
    robot.pub_traj.publish = sent.append
    executor_node.on_estop(msg_type("std_msgs/msg/Bool")(data=True))  # once crashed here on NaN joints
    assert executor_node.gate.estopped and len(sent) == 1  # a hold at the last good position
    assert list(sent[0].points[0].positions) == pytest.approx(list(good))


def test_degenerate_transforms_are_dropped(executor_node, caplog):
    robot = executor_node.robot
    good = np.eye(4)
    good[:3, 3] = [0.1, 0.2, 0.9]
    tf = msg_type("tf2_msgs/msg/TFMessage")
    robot._on_tf(tf(transforms=[matrix_to_transform_stamped(good, "base_link", "cam", 0)]))
    zero = matrix_to_transform_stamped(good, "base_link", "cam", 0)
    zero.transform.rotation.w = zero.transform.rotation.x = zero.transform.rotation.y = 0.0
    zero.transform.rotation.z = 0.0
    nan = matrix_to_transform_stamped(good, "base_link", "cam", 0)
    nan.transform.translation.x = math.nan
    robot._on_tf(tf(transforms=[zero, nan]))
    assert caplog.text.count("dropped transform base_link -> cam") == 2
    np.testing.assert_allclose(robot.base_to("cam"), good)


@pytest.mark.parametrize("field, value, expect", [
    ("k", [0.0] * 9, "fx, fy > 0"),
    ("k", [500.0, 0, 320, 0, 500.0, 240, 0, 0, math.nan], "finite 3x3"),
    ("k", [500.0, 0, 320], "bad camera_info"),
    ("width", 0, "width must be a positive int"),
])
def test_inconsistent_camera_info_is_dropped(executor_node, caplog, field, value, expect):
    robot = executor_node.robot
    info = msg_type("sensor_msgs/msg/CameraInfo")
    good = info(width=640, height=480, k=[500.0, 0, 320, 0, 500.0, 240, 0, 0, 1], distortion_model="plumb_bob")
    robot._on_info(good)
    bad = info(width=640, height=480, k=[500.0, 0, 320, 0, 500.0, 240, 0, 0, 1], distortion_model="plumb_bob")
    setattr(bad, field, value)
    robot._on_info(bad)
    assert robot._info is good and "dropped camera info" in caplog.text and expect in caplog.text


def test_a_restarted_executor_is_still_estopped_until_reset(loopback_dds):
    import os
    from pathlib import Path

    from ivl_embodied.nodes.executor_node import ExecutorNode, estop_latch_file

    assert estop_latch_file("auto") == Path(os.environ["ROS_HOME"]) / "ivl_embodied" / "estop_latched"
    assert estop_latch_file("") is None
    Bool = msg_type("std_msgs/msg/Bool")
    first = ExecutorNode.create({})
    try:
        assert not first.gate.estopped
        first.on_estop(Bool(data=True))
    finally:
        first.shutdown()  # killed or stopped while e-stopped, never reset
    second = ExecutorNode.create({})
    try:
        states = []
        second.estop_state.publish = states.append
        assert second.gate.estopped and "before this process started" in second.gate.estop_reasons()[0]
        second.on_estop(Bool(data=False))
        assert not second.gate.estopped and states[-1].data is False
    finally:
        second.shutdown()
    third = ExecutorNode.create({})
    try:
        assert not third.gate.estopped
    finally:
        third.shutdown()


def _image(stamp_ns, encoding="rgb8"):
    return msg_type("sensor_msgs/msg/Image")(
        header=msg_type("std_msgs/msg/Header")(stamp=ns_to_stamp(stamp_ns)), height=1, width=1, encoding=encoding,
        step=3 if encoding == "rgb8" else 4, data=bytes(3 if encoding == "rgb8" else 4))


def test_frames_are_kept_for_a_time_span_and_forgotten_when_robot_time_jumps_back(executor_node, caplog):
    """A simulator restarted (or a bag looped) starts its clock again: frames of the old timeline must
    not pass for new ones ('the first frame newer than now' once picked a frame of the last scene)."""
    robot = executor_node.robot
    n = len(robot.arm_joint_names)
    span = robot.cfg.frame_history_s
    assert span == executor_node.params["max_plan_age_s"] + executor_node.params["frame_wait_s"]
    second = 1_000_000_000
    for t in range(0, 30):  # 15 s at 2 Hz
        robot._on_rgb(_image(t * second // 2))
        robot._on_depth(_image(t * second // 2, "32FC1"))
    kept = robot.frame_stamps()
    assert kept[-1] == 29 * second // 2 and kept[0] >= kept[-1] - span * second and len(kept) < 30
    robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=14 * second))
    robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=second // 5))  # the clock starts again
    assert robot.frame_stamps() == [] and "robot time jumped back" in caplog.text
    robot._on_rgb(_image(13 * second))  # a late frame of the old timeline
    robot._on_depth(_image(13 * second, "32FC1"))
    robot._on_rgb(_image(second // 2))
    robot._on_depth(_image(second // 2, "32FC1"))
    assert robot.frame_stamps() == [second // 2]  # 13 s is more than a span ahead of the new frames: forgotten
    # a new simulator's camera heard before its joint states: its frames are of the new timeline and stay
    for t in (1, 2, 3):
        robot._on_rgb(_image(t * second))
        robot._on_depth(_image(t * second, "32FC1"))
    robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=3 * second))  # (robot time was 0.2 s)
    robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=40 * second))  # the old one, late
    robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=3 * second + second // 10))  # back: the new one
    assert robot.frame_stamps() == [second // 2, second, 2 * second, 3 * second]


def test_an_old_timelines_frame_does_not_pass_for_a_new_frame_of_the_same_stamp(executor_node):
    """A simulator ran 10 s and restarted; the new one's camera is not heard yet (discovery) but its joint states
    are, and a plan names the new frame of 1.2 s: the old timeline's frame of 1.2 s must not stand in for it
    (a plan was once grounded in the last scene's frame of its stamp)."""
    from ivl_embodied.nodes.topic_robot import RobotUnavailable

    robot = executor_node.robot
    n = len(robot.arm_joint_names)
    second = 1_000_000_000
    for t in range(1, 51):  # the old timeline: 0.2 .. 10 s at 5 Hz
        robot._on_rgb(_image(t * second // 5))
        robot._on_depth(_image(t * second // 5, "32FC1"))
        robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=t * second // 5))
    robot._on_joints(_joints(executor_node, [0.1] * n, stamp_ns=second // 10))  # the new timeline's clock
    assert robot.frame_stamps() == []  # 0.2 .. 1.0 s too: they came before the old timeline's later frames
    with pytest.raises(RobotUnavailable, match="no RGB-D frame"):
        robot.get_observation(stamp_ns=6 * second // 5)
    robot._on_rgb(_image(6 * second // 5))  # the new camera, heard at last
    robot._on_depth(_image(6 * second // 5, "32FC1"))
    assert robot.frame_stamps() == [6 * second // 5]


def _tf(parent, child, xyz):
    m = np.eye(4)
    m[:3, 3] = xyz
    return matrix_to_transform_stamped(m, parent, child, 0)


def test_the_camera_pose_is_composed_along_the_transform_tree_of_tf_static_and_tf(executor_node):
    """A RealSense driver publishes camera_link -> its optical frame on /tf_static; a hand-eye calibration
    publishes base_link -> camera_link (on /tf, say): the camera's pose in the base frame is both."""
    from ivl_embodied.nodes.topic_robot import RobotUnavailable

    robot = executor_node.robot
    tf = msg_type("tf2_msgs/msg/TFMessage")
    robot._on_tf(tf(transforms=[_tf("camera_link", "camera_color_optical_frame", [0.0, 0.015, 0.0])]))
    with pytest.raises(RobotUnavailable, match="no transform base_link -> 'camera_color_optical_frame': "
                                               "'camera_color_optical_frame -> camera_link' has no parent"):
        robot.base_to("camera_color_optical_frame")
    robot._on_tf(tf(transforms=[_tf("base_link", "camera_link", [1.0, 0.0, 0.8])]), "/tf")
    np.testing.assert_allclose(robot.base_to("camera_color_optical_frame")[:3, 3], [1.0, 0.015, 0.8])
    robot._on_tf(tf(transforms=[_tf("base_link", "camera_link", [1.1, 0.0, 0.8])]), "/tf")  # it moved: newest
    np.testing.assert_allclose(robot.base_to("camera_color_optical_frame")[:3, 3], [1.1, 0.015, 0.8])
    robot._on_tf(tf(transforms=[_tf("a", "b", [0, 0, 0]), _tf("b", "a", [0, 0, 0])]))
    with pytest.raises(RobotUnavailable, match="form a loop"):
        robot.base_to("a")


def test_a_moving_camera_is_taken_where_it_was_at_the_frames_stamp(executor_node):
    """A camera on the arm: /tf gives camera_link's pose over time (out of order too); a frame is grounded with the
    pose at its own stamp, between the poses around it, not with the newest."""
    from ivl_embodied.nodes.topic_robot import RobotUnavailable
    from ivl_embodied.perception.grounding import CameraInfo
    from ivl_embodied.transport.convert import camera_info_to_msg, image_to_msg

    robot = executor_node.robot
    tf = msg_type("tf2_msgs/msg/TFMessage")

    def at(x, yaw, stamp_ns):
        m = np.eye(4)
        m[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
        m[:3, 3] = [x, 0.0, 0.8]
        return matrix_to_transform_stamped(m, "base_link", "camera_link", stamp_ns)

    robot._on_tf(tf(transforms=[_tf("camera_link", "camera_color_optical_frame", [0.0, 0.015, 0.0])]))
    for x, yaw, s in ((1.0, 0.0, 1_000_000_000), (1.4, 0.4, 3_000_000_000), (1.2, 0.2, 2_000_000_000)):
        robot._on_tf(tf(transforms=[at(x, yaw, s)]), "/tf")
    halfway = robot.base_to("camera_color_optical_frame", 1_500_000_000)
    np.testing.assert_allclose(halfway[:3, 3], [1.1 - 0.015 * math.sin(0.1), 0.015 * math.cos(0.1), 0.8], atol=1e-9)
    assert math.atan2(halfway[1, 0], halfway[0, 0]) == pytest.approx(0.1)  # the rotation halfway too
    np.testing.assert_allclose(robot.base_to("camera_color_optical_frame")[:3, 3][0], 1.4 - 0.015 * math.sin(0.4))
    with pytest.raises(RobotUnavailable, match=r"no transform of 'camera_link' at 5.000 s on /tf: its poses span "
                                               r"1.000..3.000 s"):
        robot.base_to("camera_color_optical_frame", 5_000_000_000)
    # an observation of the frame stamped 2.5 s carries the camera pose of 2.5 s
    stamp = 2_500_000_000
    info = CameraInfo(width=4, height=4, k=np.array([[5.0, 0, 2], [0, 5.0, 2], [0, 0, 1]]), t_base_camera=np.eye(4),
                      frame_id="camera_color_optical_frame")
    robot._on_info(camera_info_to_msg(info, stamp))
    robot._on_joints(_joints(executor_node, [0.0] * len(robot.arm_joint_names), stamp_ns=stamp))
    robot._on_rgb(image_to_msg(np.zeros((4, 4, 3), np.uint8), stamp, info.frame_id))
    robot._on_depth(image_to_msg(np.ones((4, 4), np.float32), stamp, info.frame_id))
    pose = robot.get_observation(stamp_ns=stamp).camera_info.t_base_camera
    np.testing.assert_allclose(pose, robot.base_to("camera_color_optical_frame", stamp))
    assert pose[0, 3] == pytest.approx(1.3 - 0.015 * math.sin(0.3))


def test_a_fixed_cameras_calibration_file_gives_its_pose(loopback_dds, tmp_path):
    from ivl_embodied.nodes.executor_node import ExecutorNode
    from ivl_embodied.nodes.topic_robot import calibration_transform

    good = tmp_path / "cam.yaml"
    good.write_text("parent: base_link\nchild: camera_color_optical_frame\ntranslation: [1.15, 0.0, 0.78]\n"
                    "rotation: [0.0, 0.0, 0.0, 1.0]\n")
    node = ExecutorNode.create({"camera_calibration_file": str(good)})
    try:
        np.testing.assert_allclose(node.robot.base_to("camera_color_optical_frame")[:3, 3], [1.15, 0.0, 0.78])
    finally:
        node.shutdown()
    for text, words in (("parent: base_link\n", "needs exactly parent, child, translation, rotation"),
                        ("parent: a\nchild: b\ntranslation: [0, 0, 0]\nrotation: [0, 0, 0, 0]\n", "not a rotation"),
                        ("parent: a\nchild: b\ntranslation: [0, 0]\nrotation: [0, 0, 0, 1]\n", "not enough values")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"camera calibration {bad}: .*{words}"):
            calibration_transform(bad)
