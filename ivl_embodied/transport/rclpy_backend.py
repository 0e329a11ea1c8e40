"""rclpy backend: the same interface on a ROS 2 machine, wire-identical by construction.

Publishers send the CDR bytes of :func:`ivl_embodied.transport.serialize` through rclpy's
serialized-message path (``Publisher.publish(bytes)``), subscriptions are created with
``raw=True`` and decode the bytes with :func:`ivl_embodied.transport.deserialize` — so both
backends produce and consume exactly the same bytes and hand callbacks the same generated
classes. rclpy still needs the ROS type-support class for a topic: it is imported from the ROS
package (``importlib.import_module("sensor_msgs.msg").Image``; ``ivl_embodied_msgs`` must be
built with colcon).

Written against rclpy's public API (Humble/Jazzy); on machines without ROS 2 it is exercised
only with a fake ``rclpy`` in the tests.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from ivl_embodied.transport import naming
from ivl_embodied.transport.interface import (
    Publisher,
    Subscription,
    Timer,
    TransportNode,
    qos_and_topic,
    type_name_of,
    unmatched_error,
)
from ivl_embodied.transport.qos import QosProfile, to_rclpy


def ros_message_class(type_name: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (from the built ROS package)."""
    pkg, _, name = type_name.split("/")
    try:
        module = importlib.import_module(f"{pkg}.msg")
    except ImportError as exc:
        raise ImportError(
            f"rclpy backend needs the ROS package {pkg!r} for {type_name} "
            f"(source your ROS 2 / colcon workspace): {exc}"
        ) from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"{pkg}.msg has no message {name!r}") from None


class RclpyPublisher(Publisher):
    def __init__(self, node: RclpyNode, topic: str, type_name: str, qos: QosProfile):
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._pub = node._node.create_publisher(ros_message_class(type_name), topic, to_rclpy(qos))

    def publish_raw(self, data: bytes) -> None:
        # rclpy publishes `bytes` as an already-serialized message (rcl_publish_serialized_message)
        self._pub.publish(bytes(data))

    @property
    def matched_subscribers(self) -> int:
        return self._pub.get_subscription_count()


class RclpyNode(TransportNode):
    backend = "rclpy"

    def __init__(self, name: str, parameters: dict[str, Any] | None = None):
        super().__init__(name, parameters)
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self._rclpy = rclpy
        if not rclpy.ok():
            rclpy.init(args=None)
            self._owns_context = True
        else:
            self._owns_context = False
        # Parameters are handled by TransportNode (same semantics on both backends); the rclpy
        # node is only the ROS graph handle.
        self._node = Node(name)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self._node)
        self._subs: list[Subscription] = []
        self._pubs: dict[str, RclpyPublisher] = {}
        self._closed = False

    def create_publisher(self, msg_type: str | type, topic: str,
                         qos: QosProfile | str | int | None = None) -> RclpyPublisher:
        topic, profile = qos_and_topic(topic, qos)
        pub = RclpyPublisher(self, topic, type_name_of(msg_type), profile)
        self._pubs[topic] = pub
        return pub

    def create_subscription(self, msg_type: str | type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | str | int | None = None, raw: bool = False) -> Subscription:
        topic, profile = qos_and_topic(topic, qos)
        type_name = type_name_of(msg_type)
        sub = Subscription(self, topic, type_name, callback, profile, raw)
        sub.handle = self._node.create_subscription(
            ros_message_class(type_name), topic, sub.dispatch, to_rclpy(profile), raw=True
        )
        self._subs.append(sub)
        return sub

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback)
        handle = self._node.create_timer(timer.period_s, callback)
        original_cancel = timer.cancel

        def cancel() -> None:
            original_cancel()
            handle.cancel()

        timer.cancel = cancel  # type: ignore[method-assign]
        return timer

    def spin_once(self, timeout: float = 0.1) -> None:
        if self._closed:
            raise RuntimeError(f"node {self.name!r} is shut down")
        self._executor.spin_once(timeout_sec=timeout)

    def _wait_matched(self, topic: str, timeout: float, count: int, publishers: bool) -> int:
        topic = naming.resolve_topic(topic)
        if publishers:
            ours = [s.type_name for s in self._subs if s.topic == topic]
            info = self._node.get_publishers_info_by_topic
        else:
            ours = [p.type_name for p in self._pubs.values() if p.topic == topic]
            info = self._node.get_subscriptions_info_by_topic
        if not ours:
            raise ValueError(f"node {self.name!r} has no {'subscription' if publishers else 'publisher'} on {topic}")
        type_name = ours[0]
        deadline = time.monotonic() + timeout
        while True:
            types = [e.topic_type for e in info(topic)]
            same = sum(1 for t in types if t == type_name)
            if same >= count:
                return same
            if time.monotonic() >= deadline:
                break
            self.spin_once(0.05)
        others = sorted({t for t in types if t != type_name})
        if others:
            self.logger.error("type mismatch on %s: we use %s, other endpoints use %s", topic, type_name, others)
        raise unmatched_error(topic, type_name, publishers, same, count, timeout, others)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._shutdown.set()
        self._closed = True
        self._executor.remove_node(self._node)
        self._node.destroy_node()
        if self._owns_context:
            self._rclpy.try_shutdown()
