"""Perception: a plan box + depth image + camera info -> a 3D target in the robot base frame
(:mod:`.grounding`). ROS-free."""
