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
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ivl_embodied.transport.interface import (
    ParameterError,
    Publisher,
    Subscription,
    Timer,
    TransportNode,
    _check_param_type,
    type_name_of,
    unmatched_error,
)
from ivl_embodied.transport.naming import NodeNames
from ivl_embodied.transport.qos import QosProfile, to_rclpy

FASTDDS_PROFILE = Path(__file__).resolve().parent / "fastdds" / "large_data.xml"


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


def use_fastdds_profile() -> str | None:
    """Point Fast DDS at our shipped profile (``transport/fastdds/large_data.xml``) unless the user
    chose one or another RMW; returns the path used, if any.

    Fast DDS's built-in transports lose multi-MB samples on one host: its shared-memory segments
    (512 kB) cannot hold a 1.2 MB depth image or a 3.7 MB embedding, so they go over UDP in 64 kB
    fragments, and a best-effort image with one fragment dropped by a full socket buffer is lost
    (about 1 in 5 camera frames here). The profile gives shared memory 64 MB segments and UDP
    larger socket buffers; UDP stays, for peers on other hosts and on other DDS vendors."""
    if any(os.environ.get(k) for k in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")):
        return None
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return None
    path = str(FASTDDS_PROFILE)
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = path
    return path


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


class RclLogHandler(logging.Handler):
    """Hands a node logger's records to the rclpy node's rcl logger, which puts them on ``/rosout``
    (rcl's own console output is off: Python's logging already prints them)."""

    def __init__(self, rcl_logger: Any):
        super().__init__(logging.DEBUG)
        from rclpy.logging import LoggingSeverity

        self.rcl_logger = rcl_logger
        rcl_logger.set_level(LoggingSeverity.DEBUG)  # the Python logger's level already filtered

    def emit(self, record: logging.LogRecord) -> None:
        # One call site per severity: rclpy remembers each call site's severity and refuses another.
        try:
            msg, level, log = record.getMessage(), record.levelno, self.rcl_logger
            if level >= logging.CRITICAL:
                log.fatal(msg)
            elif level >= logging.ERROR:
                log.error(msg)
            elif level >= logging.WARNING:
                log.warning(msg)
            elif level >= logging.INFO:
                log.info(msg)
            else:
                log.debug(msg)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class RclpyNode(TransportNode):
    """A node on rclpy. Names, remaps and parameter semantics are ours (the same on both backends);
    the rclpy node carries the name and namespace into the ROS graph, serves our parameters as ROS
    parameters (``ros2 param get/set``, ``/parameter_events``), and publishes our log records on
    ``/rosout``."""

    backend = "rclpy"

    def __init__(self, name: str, parameters: dict[str, Any] | None = None, names: NodeNames | None = None,
                 rosout: bool = True):
        super().__init__(name, parameters, names)
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self._rclpy = rclpy
        if not rclpy.ok():
            use_fastdds_profile()
            rclpy.init(args=["--ros-args", "--disable-stdout-logs"])
            self._owns_context = True
        else:
            self._owns_context = False
        # Topic names reach rclpy already resolved (absolute), so rclpy's own expansion changes nothing.
        self._node = Node(name, namespace=self.namespace, enable_rosout=rosout,
                          automatically_declare_parameters_from_overrides=False)
        self._node.add_on_set_parameters_callback(self._on_set_parameters)
        self._log_handler = RclLogHandler(self._node.get_logger()) if rosout else None
        if self._log_handler is not None:
            self.logger.addHandler(self._log_handler)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self._node)
        self._subs: list[Subscription] = []
        self._pubs: dict[str, RclpyPublisher] = {}
        self._closed = False

    @property
    def rclpy_node(self) -> Any:
        """The ``rclpy.node.Node`` under this node (for what only rclpy has: actions)."""
        return self._node

    # ------------------------------------------------------------------ parameters as ROS parameters
    def declare_parameter(self, name: str, default: Any) -> Any:
        value = super().declare_parameter(name, default)
        if name == "use_sim_time":  # rclpy declares it itself
            self._node.set_parameters([self._ros_parameter(name, value)])
            return value
        from rcl_interfaces.msg import ParameterDescriptor

        dynamic = value is None or value == []
        self._node.declare_parameter(name, None if dynamic else value,
                                     ParameterDescriptor(name=name, dynamic_typing=dynamic))
        return value

    def set_parameter(self, name: str, value: Any) -> None:
        super().set_parameter(name, value)  # our checks first: a clear error naming the value
        result = self._node.set_parameters([self._ros_parameter(name, self._params[name])])[0]
        if not result.successful:
            raise ParameterError(f"parameter {name!r}: {result.reason}")

    @staticmethod
    def _ros_parameter(name: str, value: Any) -> Any:
        from rclpy.parameter import Parameter

        return Parameter(name, value=value)

    def _on_set_parameters(self, params: list[Any]) -> Any:
        """``ros2 param set`` and ``set_parameters`` calls: the same type checks as ours."""
        from rcl_interfaces.msg import SetParametersResult

        checked = {}
        for p in params:
            if p.name not in self._params:
                if p.name == "use_sim_time":
                    continue
                return SetParametersResult(successful=False, reason=f"parameter {p.name!r} is not ours")
            value = list(p.value) if isinstance(p.value, (list, tuple)) or type(p.value).__name__ == "array" \
                else p.value
            try:
                checked[p.name] = _check_param_type(p.name, self._param_defaults[p.name], value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        self._params.update(checked)
        return SetParametersResult(successful=True)

    def create_publisher(self, msg_type: str | type, topic: str,
                         qos: QosProfile | str | int | None = None) -> RclpyPublisher:
        topic, profile = self._resolve(topic, qos)
        pub = RclpyPublisher(self, topic, type_name_of(msg_type), profile)
        self._pubs[topic] = pub
        return pub

    def create_subscription(self, msg_type: str | type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | str | int | None = None, raw: bool = False) -> Subscription:
        topic, profile = self._resolve(topic, qos)
        type_name = type_name_of(msg_type)
        sub = Subscription(self, topic, type_name, callback, profile, raw)
        sub.handle = self._node.create_subscription(
            ros_message_class(type_name), topic, sub.dispatch, to_rclpy(profile), raw=True
        )
        self._subs.append(sub)
        return sub

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        from rclpy.clock import Clock, ClockType

        timer = Timer(period_s, callback)
        # Steady time, as on the Cyclone backend: with use_sim_time the node's own clock follows /clock,
        # and a timer on it would never fire in the node that publishes /clock (the simulator).
        handle = self._node.create_timer(timer.period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))
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
        topic = self.resolve_topic(topic)
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
        if self._log_handler is not None:
            self.logger.removeHandler(self._log_handler)
        self._executor.remove_node(self._node)
        self._node.destroy_node()
        if self._owns_context:
            self._rclpy.try_shutdown()
