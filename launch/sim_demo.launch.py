"""Launch the whole stack against the MuJoCo robot on one machine.

    ros2 launch ivl_embodied sim_demo.launch.py [robot:=panda]
"""

import os
import sys

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph import nodes_for, robot_argument  # noqa: E402


def generate_launch_description():
    # the simulator's /clock is the graph's time
    return LaunchDescription([robot_argument(),
                              *nodes_for(('robot', 'edge', 'workstation'), [{'use_sim_time': True}])])
