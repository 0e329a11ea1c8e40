"""Transport: ROS 2 messages, naming and QoS over rclpy or Cyclone DDS, wire-identical.

    from ivl_embodied.transport import make_node, msg_type
    node = make_node("planner_node")
    pub = node.create_publisher("ivl_embodied_msgs/msg/ActionPlan", "/ivl/plan")
    node.create_subscription("sensor_msgs/msg/Image", "/camera/color/image_raw", cb, "sensor_data")
    node.spin()

Importing this package imports neither cyclonedds nor rclpy; backends load on first use.
"""

from __future__ import annotations

from ivl_embodied.transport.cyclone_types import (
    MessageDecodeError,
    deserialize,
    msg_type,
    ros_type_name,
    serialize,
    to_dict,
)
from ivl_embodied.transport.factory import choose_backend, cyclone_config_uri, make_node
from ivl_embodied.transport.interface import ParameterError, TopicTypeMismatchError, TransportNode
from ivl_embodied.transport.qos import DEFAULT, LARGE_LATEST, SENSOR_DATA, QosProfile

__all__ = [
    "DEFAULT",
    "LARGE_LATEST",
    "SENSOR_DATA",
    "MessageDecodeError",
    "ParameterError",
    "QosProfile",
    "TopicTypeMismatchError",
    "TransportNode",
    "choose_backend",
    "cyclone_config_uri",
    "deserialize",
    "make_node",
    "msg_type",
    "ros_type_name",
    "serialize",
    "to_dict",
]
