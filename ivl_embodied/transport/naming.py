"""ROS 2 names ↔ DDS names (rmw_cyclonedds conventions)."""

from __future__ import annotations

import re

from ivl_embodied.transport.msgdefs import normalize_type_name

_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NODE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve_topic(topic: str) -> str:
    """A fully qualified ROS topic name (``cmd`` → ``/cmd``); raises ``ValueError`` if invalid."""
    if not isinstance(topic, str) or not topic or topic.endswith("/") and topic != "/":
        raise ValueError(f"invalid topic name {topic!r}")
    full = topic if topic.startswith("/") else "/" + topic
    tokens = full[1:].split("/")
    bad = [t for t in tokens if not _TOKEN.match(t)]
    if bad or "__" in full:
        raise ValueError(f"invalid topic name {topic!r} (bad token(s) {bad})")
    return full


def dds_topic(topic: str) -> str:
    """ROS topic ``/a/b`` → DDS topic ``rt/a/b``."""
    return "rt" + resolve_topic(topic)


def ros_topic_from_dds(name: str) -> str | None:
    """DDS topic ``rt/a/b`` → ``/a/b``; ``None`` for non-ROS topics."""
    return name[2:] if name.startswith("rt/") else None


def dds_type(type_name: str) -> str:
    """``pkg/msg/Name`` → ``pkg::msg::dds_::Name_``."""
    pkg, _, name = normalize_type_name(type_name).split("/")
    return f"{pkg}::msg::dds_::{name}_"


def ros_type_from_dds(name: str) -> str:
    """``pkg::msg::dds_::Name_`` → ``pkg/msg/Name`` (other names returned unchanged)."""
    parts = name.split("::")
    if len(parts) == 4 and parts[2] == "dds_" and parts[3].endswith("_"):
        return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"
    return name


def validate_node_name(name: str) -> str:
    if not isinstance(name, str) or not _NODE.match(name):
        raise ValueError(f"invalid node name {name!r}: letters, digits and '_', not starting with a digit")
    return name
