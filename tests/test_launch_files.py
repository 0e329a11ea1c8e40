"""The ROS 2 launch files (launch/*.launch.py) as `ros2 launch` runs them. ROS 2's `launch` and `launch_ros` are not
on PyPI, so they are stood in by recorders of what the files ask for: which nodes, with which parameters, the
`robot:=NAME` argument given to the simulator and the executor only."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(self) is type(other) and (self.args, self.kwargs) == (other.args, other.kwargs)


class Node(_Recorded):
    pass


class DeclareLaunchArgument(_Recorded):
    pass


class LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context[self.args[0]]


class ExecuteProcess(_Recorded):
    pass


class OpaqueFunction(_Recorded):
    pass


class LaunchDescription(list):
    pass


@pytest.fixture
def launch_stand_ins(monkeypatch):
    mods = {"launch": {"LaunchDescription": LaunchDescription},
            "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "ExecuteProcess": ExecuteProcess,
                               "OpaqueFunction": OpaqueFunction},
            "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
            "launch_ros": {}, "launch_ros.actions": {"Node": Node},
            "ament_index_python": {},
            "ament_index_python.packages": {"get_package_share_directory": lambda _p: str(REPO)}}
    for name, attrs in mods.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    monkeypatch.delitem(sys.modules, "_graph", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


def _launch(name: str) -> list:
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


@pytest.mark.parametrize("name, nodes", [
    ("sim_demo.launch.py", {"sim_node", "vision_node", "planner_node", "executor_node"}),
    ("robot.launch.py", {"sim_node", "executor_node"}),
])
def test_the_robot_argument_reaches_the_simulator_and_the_executor_only(launch_stand_ins, name, nodes):
    desc = _launch(name)
    (arg,) = [a for a in desc if isinstance(a, DeclareLaunchArgument)]
    assert arg.args == ("robot",) and arg.kwargs["default_value"] == "ivl_arm6"
    launched = {n.kwargs["name"]: n.kwargs for n in desc if isinstance(n, Node)}
    assert set(launched) == nodes
    robot = {"robot": LaunchConfiguration("robot", default="ivl_arm6")}
    for node, kwargs in launched.items():
        assert kwargs["parameters"][0] == str(REPO / "config" / "ivl_embodied.yaml")
        assert (robot in kwargs["parameters"]) == (node in ("sim_node", "executor_node")), (node, kwargs)


@pytest.mark.parametrize("name, nodes", [("edge.launch.py", {"vision_node"}),
                                         ("workstation.launch.py", {"planner_node"})])
def test_the_other_machines_launch_their_own_nodes_without_a_robot(launch_stand_ins, name, nodes):
    desc = _launch(name)
    assert {n.kwargs["name"] for n in desc if isinstance(n, Node)} == nodes
    assert not [a for a in desc if isinstance(a, DeclareLaunchArgument)]


def test_the_gazebo_launch_runs_the_world_the_arm_the_bridge_and_our_nodes_but_not_our_simulator(launch_stand_ins,
                                                                                                  tmp_path):
    import yaml

    from ivl_embodied.cli import main
    from ivl_embodied.sim.gazebo import camera_static_tf

    desc = _launch("gazebo.launch.py")
    args = {a.args[0] for a in desc if isinstance(a, DeclareLaunchArgument)}
    assert args == {"world", "robot_description_file", "robot"}
    ours = {n.kwargs["name"]: n.kwargs for n in desc if isinstance(n, Node)}
    assert set(ours) == {"vision_node", "planner_node", "executor_node"}  # Gazebo is the robot side
    assert {"robot": LaunchConfiguration("robot", default="ivl_arm6")} in ours["executor_node"]["parameters"]
    assert {"use_sim_time": True} in ours["executor_node"]["parameters"]
    urdf, world = tmp_path / "arm.urdf", tmp_path / "tabletop.sdf"
    urdf.write_text("<robot name='arm'/>")
    assert main(["gazebo-world", "--split", "val", "--task-index", "2", "--out", str(world)]) == 0
    (robot_side,) = [a for a in desc if isinstance(a, OpaqueFunction)]
    started = robot_side.kwargs["function"]({"world": str(world), "robot_description_file": str(urdf)})
    (gz,) = [a for a in started if isinstance(a, ExecuteProcess)]
    assert gz.kwargs["cmd"] == ["gz", "sim", "-r", str(world)]
    nodes = {(n.kwargs["package"], n.kwargs["executable"]): n.kwargs for n in started if isinstance(n, Node)}
    assert nodes[("robot_state_publisher", "robot_state_publisher")]["parameters"][0]["robot_description"] == \
        "<robot name='arm'/>"
    assert nodes[("ros_gz_sim", "create")]["arguments"] == ["-world", "ivl_tabletop", "-topic", "robot_description",
                                                            "-name", "arm"]
    bridge = yaml.safe_load(open(nodes[("ros_gz_bridge", "parameter_bridge")]["parameters"][0]["config_file"]))
    assert {e["ros_topic_name"]: e["gz_topic_name"] for e in bridge}["joint_states"] == \
        "/world/ivl_tabletop/model/arm/joint_state"
    assert nodes[("tf2_ros", "static_transform_publisher")]["arguments"] == camera_static_tf(world.read_text())
    assert nodes[("controller_manager", "spawner")]["arguments"] == ["joint_state_broadcaster", "arm_controller",
                                                                     "gripper_controller"]
