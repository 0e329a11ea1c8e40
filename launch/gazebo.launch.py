"""The stack against a Gazebo (gz-sim Harmonic) robot instead of our MuJoCo one, by the robot-side contract
(docs/sim_contract.md). Not run on our machines (Gazebo does not install there); tests/test_launch_files.py checks
what it starts.

    ivl-embodied gazebo-world --split val --task-index 0 --out tabletop.sdf
    ros2 launch ivl_embodied gazebo.launch.py world:=tabletop.sdf robot:=ur5e \
        robot_description_file:=ur5e_2f85_gz.urdf

`robot_description_file` is the arm's URDF with its gz_ros2_control plugin and controllers (as ur_description /
franka_description generate it for Gazebo): a joint_trajectory_controller named arm_controller, a
forward_command_controller named gripper_controller, and the joint_state_broadcaster. It is spawned as model "arm";
`robot` names our robot file (config/robots/), which the executor reads for its joints, home and gripper.
"""

import os
import sys
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph import nodes_for, robot_argument  # noqa: E402

MODEL = "arm"
WORLD = "ivl_tabletop"  # the world name `ivl-embodied gazebo-world` writes


def bridge_config(share):
    """sim/gazebo/ros_gz_bridge.yaml with this world's and model's names, as a file for parameter_bridge."""
    with open(os.path.join(share, "sim", "gazebo", "ros_gz_bridge.yaml")) as f:
        entries = yaml.safe_load(f)
    for e in entries:
        e["gz_topic_name"] = e["gz_topic_name"].replace("WORLD", WORLD).replace("MODEL", MODEL)
    fd, path = tempfile.mkstemp(prefix="ivl_ros_gz_bridge_", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(entries, f)
    return path


def _robot_side(context):
    from ivl_embodied.sim.gazebo import camera_static_tf

    share = get_package_share_directory("ivl_embodied")
    with open(LaunchConfiguration("robot_description_file").perform(context)) as f:
        urdf = f.read()
    with open(LaunchConfiguration("world").perform(context)) as f:
        world = f.read()
    return [
        ExecuteProcess(cmd=["gz", "sim", "-r", LaunchConfiguration("world").perform(context)], output="screen"),
        Node(package="robot_state_publisher", executable="robot_state_publisher",
             parameters=[{"robot_description": urdf, "use_sim_time": True}], output="screen"),
        Node(package="ros_gz_sim", executable="create", arguments=["-world", WORLD, "-topic", "robot_description",
                                                                    "-name", MODEL], output="screen"),
        Node(package="ros_gz_bridge", executable="parameter_bridge",
             parameters=[{"config_file": bridge_config(share), "use_sim_time": True}], output="screen"),
        # the camera where the world has it
        Node(package="tf2_ros", executable="static_transform_publisher", arguments=camera_static_tf(world)),
        Node(package="controller_manager", executable="spawner",
             arguments=["joint_state_broadcaster", "arm_controller", "gripper_controller"], output="screen"),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("world", description="the world SDF (`ivl-embodied gazebo-world --out FILE`)"),
        DeclareLaunchArgument("robot_description_file", description="the arm's URDF with gz_ros2_control"),
        robot_argument(),
        OpaqueFunction(function=_robot_side),
        *nodes_for(("robot", "edge", "workstation"), [{"use_sim_time": True}], skip=("sim_node",)),
    ])
