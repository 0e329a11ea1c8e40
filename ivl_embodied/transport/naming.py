"""ROS 2 names: expansion (namespace, ``~``), remapping, and ROS 2 ↔ DDS names (rmw_cyclonedds).

A node's topic names resolve as in rcl: a relative name (``ivl/plan``) is put under the node's
namespace (``/robot1/ivl/plan``), ``~/x`` under the node's own name (``/robot1/executor_node/x``),
an absolute name (``/tf_static``) is kept; then the first remap rule whose source, expanded the same
way, equals the name replaces it by the rule's target (expanded too). Rules come from
``--ros-args -r from:=to`` (or ``-r node_name:from:=to`` for one node only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def validate_namespace(namespace: str) -> str:
    """An absolute namespace (``/`` or ``/a/b``); a relative one (``robot1``) is made absolute."""
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"invalid namespace {namespace!r}")
    if namespace == "/":
        return namespace
    full = namespace if namespace.startswith("/") else "/" + namespace
    try:
        return resolve_topic(full.rstrip("/") or "/")
    except ValueError:
        raise ValueError(f"invalid namespace {namespace!r}: tokens of letters, digits and '_'") from None


def expand_topic(topic: str, namespace: str = "/", node_name: str | None = None) -> str:
    """``topic`` made absolute: relative names go under ``namespace``, ``~`` under the node."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"invalid topic name {topic!r}")
    if topic.startswith("~"):
        if node_name is None:
            raise ValueError(f"topic {topic!r} uses '~' but no node name is known")
        rest = topic[1:].lstrip("/")
        base = namespace.rstrip("/") + "/" + node_name
        return resolve_topic(base + ("/" + rest if rest else ""))
    if topic.startswith("/"):
        return resolve_topic(topic)
    return resolve_topic(namespace.rstrip("/") + "/" + topic)


@dataclass(frozen=True)
class Remap:
    """``-r [node:]source:=target``; ``node`` None applies to every node of the process."""

    source: str
    target: str
    node: str | None = None


@dataclass(frozen=True)
class NodeNames:
    """A node's name, namespace and remap rules: everything that turns its topic names into the graph's."""

    name: str
    namespace: str = "/"
    remaps: tuple[Remap, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", validate_node_name(self.name))
        object.__setattr__(self, "namespace", validate_namespace(self.namespace))
        object.__setattr__(self, "remaps", tuple(r for r in self.remaps if r.node in (None, self.name)))

    @property
    def fully_qualified_name(self) -> str:
        return self.namespace.rstrip("/") + "/" + self.name

    def resolve(self, topic: str) -> str:
        """The graph name of ``topic`` for this node: expanded, then remapped (first matching rule)."""
        full = expand_topic(topic, self.namespace, self.name)
        for rule in self.remaps:
            if expand_topic(rule.source, self.namespace, self.name) == full:
                return expand_topic(rule.target, self.namespace, self.name)
        return full


def validate_node_name(name: str) -> str:
    if not isinstance(name, str) or not _NODE.match(name):
        raise ValueError(f"invalid node name {name!r}: letters, digits and '_', not starting with a digit")
    return name
