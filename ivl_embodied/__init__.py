"""ivl_embodied: an embodied-agent stack on InternVL3.5's ideas.

The library under this package is ROS-free: nodes in :mod:`ivl_embodied.nodes` are
thin adapters between middleware messages and the plain functions below.
"""

__version__ = "0.1.0"
