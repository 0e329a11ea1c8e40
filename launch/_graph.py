"""Shared by the *.launch.py files: turn launch/graph.yaml into launch_ros Node actions."""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch_ros.actions import Node

from ivl_embodied.runtime.threads import available_cores, share_env, shares


def nodes_for(groups, extra_params=None):
    share = get_package_share_directory("ivl_embodied")
    with open(os.path.join(share, "launch", "graph.yaml")) as f:
        graph = yaml.safe_load(f)
    params = [os.path.join(share, "config", graph["params_file"])] + list(extra_params or [])
    chosen = [n for n in graph["nodes"] if n["group"] in groups]
    # each node its share of this machine's cores, as `ivl-embodied launch` gives it (runtime/threads.py)
    threads = shares([n["name"] for n in chosen], available_cores())
    return [
        Node(
            package="ivl_embodied",
            executable=n["executable"],
            name=n["name"],
            parameters=params,
            output="screen",
            emulate_tty=True,
            respawn=bool(n.get("respawn", False)),
            respawn_delay=float(n.get("respawn_delay", 2.0)),
            additional_env=share_env(threads[n["name"]]),
        )
        for n in chosen
    ]
