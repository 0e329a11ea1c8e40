"""Shared by the *.launch.py files: turn launch/graph.yaml into launch_ros Node actions."""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch_ros.actions import Node

from ivl_embodied.launcher import ROBOT_MODULES
from ivl_embodied.runtime.threads import available_cores, share_env, shares


def robot_argument():
    """The `robot:=NAME` launch argument: the arm the simulator and the executor drive (config/robots/NAME.yaml)."""
    from launch.actions import DeclareLaunchArgument

    return DeclareLaunchArgument("robot", default_value="ivl_arm6",
                                 description="the arm: a name of config/robots/ (ivl_arm6, panda, ur5e) or a robot "
                                             "YAML file; given to sim_node and executor_node only")


def nodes_for(groups, extra_params=None, skip=()):
    share = get_package_share_directory("ivl_embodied")
    with open(os.path.join(share, "launch", "graph.yaml")) as f:
        graph = yaml.safe_load(f)
    from launch.substitutions import LaunchConfiguration

    params = [os.path.join(share, "config", graph["params_file"])] + list(extra_params or [])
    robot = [{"robot": LaunchConfiguration("robot", default="ivl_arm6")}]
    chosen = [n for n in graph["nodes"] if n["group"] in groups and n["name"] not in skip]
    # each node its share of this machine's cores, as `ivl-embodied launch` gives it (runtime/threads.py)
    threads = shares([n["name"] for n in chosen], available_cores())
    return [
        Node(
            package="ivl_embodied",
            executable=n["executable"],
            name=n["name"],
            parameters=params + (robot if n["module"] in ROBOT_MODULES else []),
            output="screen",
            emulate_tty=True,
            respawn=bool(n.get("respawn", False)),
            respawn_delay=float(n.get("respawn_delay", 2.0)),
            additional_env=share_env(threads[n["name"]]),
        )
        for n in chosen
    ]
