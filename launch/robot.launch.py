"""Launch the executor (and, in simulation, the sim node) next to the robot.

    ros2 launch ivl_embodied robot.launch.py [robot:=ur5e]
"""

import os
import sys

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph import nodes_for, robot_argument  # noqa: E402


def generate_launch_description():
    return LaunchDescription([robot_argument(), *nodes_for(('robot',))])
