"""Launch the whole stack against the MuJoCo robot on one machine.

    ros2 launch ivl_embodied sim_demo.launch.py
"""

import os
import sys

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph import nodes_for  # noqa: E402


def generate_launch_description():
    # the simulator's /clock is the graph's time
    return LaunchDescription(nodes_for(('robot', 'edge', 'workstation'), [{'use_sim_time': True}]))
