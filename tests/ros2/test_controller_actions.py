"""ros2_control's action interfaces against a real rclpy peer: the simulator serves FollowJointTrajectory and
GripperCommand on its controllers as a real arm's controllers do (control_msgs built by scripts/ros2_jazzy.sh), the
executor sends every motion as a goal and counts it only on the result; a plain rclpy client sees the results."""

from __future__ import annotations

import pytest

from ivl_embodied.transport import msg_type

pytest.importorskip("mujoco")
pytestmark = pytest.mark.ros2

ACTIONS = ("-p", "trajectory_action:=arm_controller/follow_joint_trajectory",
           "-p", "gripper_action:=gripper_controller/gripper_cmd")


@pytest.mark.slow
def test_the_executor_drives_a_ur5e_through_ros2_control_actions_and_a_plain_client_gets_their_results(
        ros2, cyclone_here, operator_plan):
    from ivl_embodied.sim.oracle import oracle_plan
    from ivl_embodied.sim.tasks import load_split, scene_for
    from ivl_embodied.sim.world import SimWorld, sim_arm
    from ivl_embodied.transport import make_node

    task = load_split("val")[1]
    world = SimWorld(scene_for(task), sim_arm("ur5e"))
    try:
        world.settle()
        plan = oracle_plan(world, task.goal)
    finally:
        world.close()
    sim = ros2.node("ivl_embodied.nodes.sim_node", "-p", "split:=val", "-p", "task_index:=1", "-p", "robot:=ur5e",
                    *ACTIONS)
    executor = ros2.node("ivl_embodied.nodes.executor_node", "-p", "robot:=ur5e", *ACTIONS)
    node = make_node("test_operator")  # on Cyclone, in the peer's graph
    topic_commands = []
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    try:
        last, reached = operator_plan(node, plan, task.instruction, timeout=240, watch=[
            ("trajectory_msgs/msg/JointTrajectory", "/arm_controller/joint_trajectory", topic_commands),
            ("std_msgs/msg/Float64MultiArray", "/gripper_controller/commands", topic_commands)])
        assert last.state == S.STATE_SUCCEEDED, last.message
        assert reached, "the simulator says the goal is not met"
        assert topic_commands == []  # every motion went as an action goal
        report = ros2.result(ros2.probe("controllers", "--gripper-position", "0.4"), timeout=180)
    finally:
        node.shutdown()
        logs = ros2.stop(sim, executor)
    assert "controllers: FollowJointTrajectory on /arm_controller/follow_joint_trajectory" in logs, logs
    assert report["ok"], report
    status, code, why = report["too_fast"]
    assert (status, code) == (6, -1) and "speed" in why, report  # ABORTED, INVALID_GOAL, naming the limit
    status, code, why = report["foreign_joint"]
    assert (status, code) == (6, -2) and "unknown ['elbow']" in why, report  # INVALID_JOINTS
    assert report["reversed_order"][:2] == [4, 0], report  # SUCCEEDED, SUCCESSFUL: joints in any order
    assert abs(report["moved"] - 0.1) < 0.03, report
    status, before_result, after_result = report["cancelled"]
    assert status == 5 and 0.005 < before_result < 0.3 and abs(after_result) < 0.005, report  # CANCELED, held
    status, position, reached, stalled = report["gripper"]
    assert status == 4 and reached and not stalled and abs(position - 0.4) < 0.01, report  # the 2F-85's knuckle
