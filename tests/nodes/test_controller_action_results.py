"""What counts as a finished motion when ros2_control's actions report it (the checks, without ROS); the actions
need the rclpy backend, and a node on another says so. The clients and servers run for real in
tests/ros2/test_controller_actions.py."""

from __future__ import annotations

import pytest

from ivl_embodied.nodes.controller_actions import ControllerClients, gripper_outcome, trajectory_outcome


def test_a_trajectory_counts_only_when_the_controller_reports_successful():
    assert trajectory_outcome(4, 0, "") is None  # SUCCEEDED, SUCCESSFUL
    assert trajectory_outcome(6, -5, "wrist_1_joint 0.0500 from its goal") == \
        "ABORTED, error_code -5 (GOAL_TOLERANCE_VIOLATED): wrist_1_joint 0.0500 from its goal"
    assert trajectory_outcome(4, -4, "") == "SUCCEEDED, error_code -4 (PATH_TOLERANCE_VIOLATED)"  # a code says no
    assert trajectory_outcome(5, 0, "") == "CANCELED, error_code 0 (SUCCESSFUL)"  # cancelled is not done


def test_a_gripper_command_counts_when_it_reached_its_position_or_stalled_on_what_it_holds():
    assert gripper_outcome(4, 0.4, True, False) is None
    assert gripper_outcome(4, 0.55, False, True) is None  # closed on an object
    assert "ABORTED at position 0.1000" in gripper_outcome(6, 0.1, False, False)
    assert gripper_outcome(4, 0.1, False, False) is not None  # neither reached nor holding


def test_the_actions_need_the_rclpy_backend_and_say_so(loopback_dds):
    from ivl_embodied.transport import make_node

    node = make_node("actions_here")
    try:
        with pytest.raises(ValueError, match="trajectory_action needs the rclpy backend.*runs on cyclonedds"):
            ControllerClients(node, "arm_controller/follow_joint_trajectory", "")
    finally:
        node.shutdown()
