"""The rclpy backend against a minimal fake ``rclpy``, for machines where ROS 2 cannot install.

The fake records what the backend hands to rclpy: the bytes it publishes, the QoS, the
``raw=True`` subscriptions. It checks the backend's logic, not rclpy itself: tests/ros2 runs the
backend on ROS 2 Jazzy's real rclpy.
"""

from __future__ import annotations

import enum
import logging
import types
from collections import defaultdict

import pytest

from ivl_embodied.transport import (
    TopicTypeMismatchError,
    choose_backend,
    make_node,
    msg_type,
    serialize,
)


class FakeGraph:
    def __init__(self):
        self.subs = defaultdict(list)  # topic -> [(type, callback, raw)]
        self.pubs = defaultdict(list)  # topic -> [type]
        self.queue = []  # (callback, bytes)
        self.published = []  # (topic, bytes)


def make_fake_rclpy(graph: FakeGraph) -> dict[str, types.ModuleType]:
    rclpy = types.ModuleType("rclpy")
    state = {"ok": False}
    rclpy.ok = lambda: state["ok"]
    rclpy.init = lambda args=None: state.update(ok=True, args=args)
    rclpy.try_shutdown = lambda: state.update(ok=False)

    logging_mod = types.ModuleType("rclpy.logging")
    logging_mod.LoggingSeverity = enum.Enum("LoggingSeverity", "DEBUG INFO WARN ERROR FATAL")
    msgs = types.ModuleType("rcl_interfaces.msg")
    msgs.ParameterDescriptor = lambda **kw: types.SimpleNamespace(**kw)

    clock = types.ModuleType("rclpy.clock")
    clock.ClockType = enum.Enum("ClockType", "ROS_TIME SYSTEM_TIME STEADY_TIME")
    clock.Clock = lambda clock_type=None: types.SimpleNamespace(clock_type=clock_type)

    qos = types.ModuleType("rclpy.qos")
    qos.ReliabilityPolicy = enum.Enum("ReliabilityPolicy", "RELIABLE BEST_EFFORT")
    qos.HistoryPolicy = enum.Enum("HistoryPolicy", "KEEP_LAST KEEP_ALL")
    qos.DurabilityPolicy = enum.Enum("DurabilityPolicy", "VOLATILE TRANSIENT_LOCAL")

    class QoSProfile:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    qos.QoSProfile = QoSProfile

    class Endpoint:
        def __init__(self, t):
            self.topic_type = t

    class Pub:
        def __init__(self, topic, cls, profile):
            self.topic, self.cls, self.profile = topic, cls, profile

        def publish(self, msg):
            assert isinstance(msg, bytes), "the backend must publish serialized bytes"
            graph.published.append((self.topic, msg))
            for t, cb, raw in graph.subs[self.topic]:
                if t == self.cls.TYPE:
                    graph.queue.append((cb, msg if raw else None))

        def get_subscription_count(self):
            return sum(1 for t, _, _ in graph.subs[self.topic] if t == self.cls.TYPE)

    class Node:
        def __init__(self, name, namespace="/", **_options):
            self.name, self.namespace = name, namespace
            self.destroyed = False
            self.declared = {}

        def add_on_set_parameters_callback(self, cb):
            self.on_set = cb

        def declare_parameter(self, name, value, descriptor=None):
            self.declared[name] = value

        def get_logger(self):
            return types.SimpleNamespace(set_level=lambda level: None, log=lambda msg, level: None)

        def create_publisher(self, cls, topic, profile):
            graph.pubs[topic].append(cls.TYPE)
            return Pub(topic, cls, profile)

        def create_subscription(self, cls, topic, cb, profile, raw=False):
            graph.subs[topic].append((cls.TYPE, cb, raw))
            return types.SimpleNamespace(profile=profile, raw=raw)

        def create_timer(self, period, cb, clock=None):
            return types.SimpleNamespace(cancel=lambda: None, period=period)

        def get_publishers_info_by_topic(self, topic):
            return [Endpoint(t) for t in graph.pubs[topic]]

        def get_subscriptions_info_by_topic(self, topic):
            return [Endpoint(t[0]) for t in graph.subs[topic]]

        def destroy_node(self):
            self.destroyed = True

    node_mod = types.ModuleType("rclpy.node")
    node_mod.Node = Node

    class SingleThreadedExecutor:
        def add_node(self, node):
            self.node = node

        def remove_node(self, node):
            pass

        def spin_once(self, timeout_sec=None):
            while graph.queue:
                cb, data = graph.queue.pop(0)
                cb(data)

    ex = types.ModuleType("rclpy.executors")
    ex.SingleThreadedExecutor = SingleThreadedExecutor
    rclpy.qos, rclpy.node, rclpy.executors = qos, node_mod, ex

    mods = {"rclpy": rclpy, "rclpy.qos": qos, "rclpy.node": node_mod, "rclpy.executors": ex,
            "rclpy.logging": logging_mod, "rcl_interfaces.msg": msgs, "rclpy.clock": clock}
    for type_name in ("sensor_msgs/msg/Image", "std_msgs/msg/String", "std_msgs/msg/Header"):
        pkg, _, name = type_name.split("/")
        mod = mods.setdefault(f"{pkg}.msg", types.ModuleType(f"{pkg}.msg"))
        setattr(mod, name, type(name, (), {"TYPE": type_name}))
    return mods


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeGraph:
    graph = FakeGraph()
    for name, mod in make_fake_rclpy(graph).items():
        monkeypatch.setitem(__import__("sys").modules, name, mod)
    monkeypatch.delenv("IVL_TRANSPORT", raising=False)
    return graph


def test_rclpy_is_chosen_when_importable(fake: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_backend() == "rclpy"
    monkeypatch.setenv("IVL_TRANSPORT", "cyclonedds")
    assert choose_backend() == "cyclonedds"
    assert choose_backend("rclpy") == "rclpy"
    with pytest.raises(ValueError, match="'zenoh'"):
        choose_backend("zenoh")


def test_publishes_and_takes_the_same_cdr_bytes(fake: FakeGraph) -> None:
    a = make_node("cam", parameters={"rate": 5.0})
    b = make_node("viewer")
    assert a.backend == "rclpy" and a.declare_parameter("rate", 30.0) == 5.0
    got = []
    sub = b.create_subscription("sensor_msgs/msg/Image", "camera/image", got.append, "sensor_data")
    pub = a.create_publisher("sensor_msgs/msg/Image", "/camera/image", "sensor_data")
    img = msg_type("sensor_msgs/msg/Image")(height=1, width=3, encoding="rgb8", step=9, data=bytes(range(9)))
    pub.publish(img)
    assert fake.published == [("/camera/image", serialize(img))]
    b.spin_once(0.0)
    assert got == [img] and sub.received == 1
    assert pub._pub.profile.reliability.name == "BEST_EFFORT" and pub._pub.profile.depth == 5
    assert sub.handle.raw is True
    a.shutdown()
    b.shutdown()


def test_malformed_bytes_are_dropped_and_logged(fake: FakeGraph, caplog: pytest.LogCaptureFixture) -> None:
    node = make_node("sink")
    got = []
    node.create_subscription("std_msgs/msg/String", "/s", got.append)
    pub = node.create_publisher("std_msgs/msg/String", "/s")
    with caplog.at_level(logging.ERROR):
        pub.publish_raw(b"\x00\x01\x00\x00\x40\x00\x00\x00ab")
        pub.publish(msg_type("std_msgs/msg/String")(data="ok"))
        node.spin_once(0.0)
    assert [m.data for m in got] == ["ok"]
    assert any("/s" in r.getMessage() and "std_msgs/msg/String" in r.getMessage() and "10 bytes" in r.getMessage()
               for r in caplog.records)


def test_wait_for_publishers_reports_type_mismatch(fake: FakeGraph) -> None:
    node = make_node("n")
    node.create_subscription("std_msgs/msg/Header", "/t", lambda m: None)
    node.create_publisher("std_msgs/msg/String", "/t")
    with pytest.raises(TopicTypeMismatchError, match="std_msgs/msg/Header.*std_msgs/msg/String"):
        node.wait_for_publishers("/t", timeout=0.2)
    node.create_publisher("std_msgs/msg/Header", "/t")
    assert node.wait_for_publishers("/t", timeout=0.2) == 1
