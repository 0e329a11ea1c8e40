"""Cyclone DDS backend (``cyclonedds`` on PyPI), speaking ROS 2's DDS conventions.

One DomainParticipant per node on domain ``$ROS_DOMAIN_ID`` with USER_DATA ``enclave=/;`` (what
rmw_cyclonedds announces), topics ``rt/<topic>``, types ``pkg::msg::dds_::Name_``. Samples are
written and taken as raw CDR bytes (the C layer copies them as they are), and decoded here, so
a malformed sample is logged and dropped instead of breaking the spin loop.

Wrong type names: DDS silently never matches a reader and a writer whose type names differ.
We read the builtin DCPSPublication/DCPSSubscription topics and log an error naming both type
names for every such pair involving our endpoints; :meth:`CycloneNode.wait_for_publishers`
raises :class:`~ivl_embodied.transport.interface.TopicTypeMismatchError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ivl_embodied.transport import cyclone_types, graph, naming
from ivl_embodied.transport.interface import (
    Publisher,
    Subscription,
    Timer,
    TopicTypeMismatchError,
    TransportNode,
    type_name_of,
    unmatched_error,
)
from ivl_embodied.transport.naming import NodeNames
from ivl_embodied.transport.qos import QosProfile, to_cyclone

ENCLAVE_USER_DATA = b"enclave=/;"
GRAPH_CHECK_PERIOD_S = 0.25
MAX_TAKE = 64


def domain_id_from_env() -> int:
    """``$ROS_DOMAIN_ID`` (default 0), validated like ROS 2 (0..232)."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID must be an integer, got {raw!r}") from None
    if not 0 <= value <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..232, got {value}")
    return value


def write_cdr(writer: Any, data: bytes | memoryview, topic: str, type_name: str) -> None:
    """Write already-serialized CDR bytes with ``writer`` (the C layer copies them as they are)."""
    from cyclonedds._clayer import ddspy_write

    if len(data) % 4:
        data = bytes(data) + b"\0" * (4 - len(data) % 4)  # DDS samples are padded to 4 bytes
    ret = ddspy_write(writer._ref, data)
    if ret < 0:
        raise RuntimeError(f"DDS write on {topic} ({type_name}, {len(data)} bytes) failed: code {ret}")


class CyclonePublisher(Publisher):
    def __init__(self, node: CycloneNode, topic: str, type_name: str, qos: QosProfile):
        from cyclonedds.pub import DataWriter

        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._writer = DataWriter(node._participant, node._topic(topic, type_name), qos=to_cyclone(qos, writer=True))

    def publish(self, msg: Any) -> None:
        """Serialize ``msg`` and write it; the writer copies the serializer's buffer directly."""
        if cyclone_types.ros_type_name(msg) != self.type_name:
            raise TypeError(
                f"publisher on {self.topic} sends {self.type_name}, got {cyclone_types.ros_type_name(msg)}"
            )
        self.publish_raw(cyclone_types.serialize_view(msg))

    def publish_raw(self, data: bytes | memoryview) -> None:
        write_cdr(self._writer, data, self.topic, self.type_name)

    @property
    def matched_subscribers(self) -> int:
        return self._writer.get_publication_matched_status().current_count


class CycloneSubscription(Subscription):
    def __init__(self, node: CycloneNode, topic: str, type_name: str, callback: Callable[[Any], None],
                 qos: QosProfile, raw: bool):
        super().__init__(node, topic, type_name, callback, qos, raw)
        from cyclonedds._clayer import ddspy_take
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState
        from cyclonedds.sub import DataReader

        self._reader = DataReader(node._participant, node._topic(topic, type_name), qos=to_cyclone(qos, writer=False))
        self._mask = SampleState.Any | ViewState.Any | InstanceState.Any
        self.condition = ReadCondition(self._reader, self._mask)
        self._take = ddspy_take

    def take_all(self) -> list[bytes]:
        """Raw CDR bytes of every valid sample waiting in the reader (at most its keep-last depth)."""
        out: list[bytes] = []
        while True:
            ret = self._take(self._reader._ref, self._mask, MAX_TAKE)
            if isinstance(ret, int):
                raise RuntimeError(f"DDS take on {self.topic} failed: code {ret}")
            out.extend(data for data, info in ret if info.valid_data)
            if len(ret) < MAX_TAKE:
                return out

    @property
    def matched_publishers(self) -> int:
        return self._reader.get_subscription_matched_status().current_count


class CycloneNode(TransportNode):
    backend = "cyclonedds"

    def __init__(self, name: str, parameters: dict[str, Any] | None = None, domain_id: int | None = None,
                 names: NodeNames | None = None, rosout: bool = True):
        super().__init__(name, parameters, names)
        from cyclonedds.builtin import (
            BuiltinDataReader,
            BuiltinTopicDcpsPublication,
            BuiltinTopicDcpsSubscription,
        )
        from cyclonedds.core import GuardCondition, Policy, Qos, WaitSet
        from cyclonedds.domain import DomainParticipant

        self.domain_id = domain_id_from_env() if domain_id is None else int(domain_id)
        self._participant = DomainParticipant(self.domain_id, qos=Qos(Policy.Userdata(data=ENCLAVE_USER_DATA)))
        self._topics: dict[str, tuple[Any, str]] = {}
        self._publishers: dict[str, CyclonePublisher] = {}
        self._subscriptions: list[CycloneSubscription] = []
        self._timers: list[Timer] = []
        self._waitset = WaitSet(self._participant)
        self._guard = GuardCondition(self._participant)
        self._waitset.attach(self._guard)
        self._pub_reader = BuiltinDataReader(self._participant, BuiltinTopicDcpsPublication)
        self._sub_reader = BuiltinDataReader(self._participant, BuiltinTopicDcpsSubscription)
        self._reported: set[tuple[str, str, str]] = set()
        self._next_graph_check = 0.0
        self._closed = False
        self._discovery_writer = None
        # Graph citizenship (what rmw implementations do): our node and its endpoints announced on
        # ros_discovery_info, so ROS 2 tools list them; the node's log records on /rosout.
        self._discovery_writer = self._raw_writer(graph.DISCOVERY_TOPIC, graph.DISCOVERY_TYPE, graph.DISCOVERY_QOS)
        self._rosout_handler = None
        if rosout:
            pub = self.create_publisher(graph.LOG_TYPE, graph.ROSOUT_TOPIC, graph.ROSOUT_QOS)
            self._rosout_handler = graph.RosoutHandler(pub, self.names)
            self.logger.addHandler(self._rosout_handler)
        self._announce()
        self.logger.debug("cyclonedds participant on domain %d", self.domain_id)

    # ------------------------------------------------------------------ entities
    def _raw_writer(self, dds_topic: str, type_name: str, qos: QosProfile) -> Any:
        """A writer on a DDS topic outside ROS naming (``ros_discovery_info``)."""
        from cyclonedds.pub import DataWriter
        from cyclonedds.topic import Topic

        topic = Topic(self._participant, dds_topic, cyclone_types.msg_type(type_name))
        return DataWriter(self._participant, topic, qos=to_cyclone(qos, writer=True))

    def _announce(self) -> None:
        """Publish this node's entities on ``ros_discovery_info`` (again after each new endpoint)."""
        if self._closed or getattr(self, "_discovery_writer", None) is None:
            return  # closed, or still in __init__ (announced once at its end)
        msg = graph.participant_entities(
            self._participant.guid.bytes, self.names,
            readers=[s._reader.guid.bytes for s in self._subscriptions],
            writers=[p._writer.guid.bytes for p in self._publishers.values()],
        )
        try:
            write_cdr(self._discovery_writer, cyclone_types.serialize(msg), graph.DISCOVERY_TOPIC, graph.DISCOVERY_TYPE)
        except RuntimeError as exc:
            self.logger.error("could not announce node %s: %s", self.name, exc)

    def _topic(self, topic: str, type_name: str) -> Any:
        from cyclonedds.topic import Topic

        if topic in self._topics:
            existing, existing_type = self._topics[topic]
            if existing_type != type_name:
                raise TopicTypeMismatchError(
                    f"node {self.name!r} already uses {topic} with type {existing_type}, not {type_name}"
                )
            return existing
        t = Topic(self._participant, naming.dds_topic(topic), cyclone_types.msg_type(type_name))
        self._topics[topic] = (t, type_name)
        return t

    def create_publisher(self, msg_type: str | type, topic: str,
                         qos: QosProfile | str | int | None = None) -> CyclonePublisher:
        topic, profile = self._resolve(topic, qos)
        pub = CyclonePublisher(self, topic, type_name_of(msg_type), profile)
        self._publishers[topic] = pub
        self._announce()
        return pub

    def create_subscription(self, msg_type: str | type, topic: str, callback: Callable[[Any], None],
                            qos: QosProfile | str | int | None = None, raw: bool = False) -> CycloneSubscription:
        topic, profile = self._resolve(topic, qos)
        sub = CycloneSubscription(self, topic, type_name_of(msg_type), callback, profile, raw)
        self._subscriptions.append(sub)
        self._waitset.attach(sub.condition)
        self._announce()
        return sub

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback)
        self._timers.append(timer)
        return timer

    # ------------------------------------------------------------------ spinning
    def _wake(self) -> None:
        if not self._closed:
            self._guard.set(True)

    def spin_once(self, timeout: float = 0.1) -> None:
        if self._closed:
            raise RuntimeError(f"node {self.name!r} is shut down")
        from cyclonedds.util import duration

        now = time.monotonic()
        self._timers = [t for t in self._timers if not t.cancelled]
        wait_s = max(0.0, timeout)
        if self._timers:
            wait_s = min(wait_s, max(0.0, min(t.next_due for t in self._timers) - now))
        if wait_s > 0:
            self._waitset.wait(duration(microseconds=int(wait_s * 1e6)) or 1)
        self._guard.set(False)
        for sub in list(self._subscriptions):
            for data in sub.take_all():
                sub.dispatch(data)
        now = time.monotonic()
        for t in list(self._timers):
            if not t.cancelled and now >= t.next_due:
                # skip missed periods instead of firing a burst
                t.next_due += t.period_s * max(1, int((now - t.next_due) // t.period_s) + 1)
                t.callback()
        if now >= self._next_graph_check:
            self._next_graph_check = now + GRAPH_CHECK_PERIOD_S
            self.check_graph()

    # ------------------------------------------------------------------ graph / type mismatches
    def _endpoints(self, reader: Any) -> list[Any]:
        """Alive endpoints announced on a builtin topic."""
        from cyclonedds.core import InstanceState

        out = []
        for s in reader.read(N=4096):
            info = getattr(s, "sample_info", None)
            if info is not None and (not info.valid_data or info.instance_state != InstanceState.Alive):
                continue
            out.append(s)
        return out

    def endpoint_types(self, topic: str, publishers: bool, _endpoints: list[Any] | None = None) -> list[str]:
        """ROS type names of all publishers (or subscriptions) on ``topic`` in the domain."""
        dds_name = naming.dds_topic(topic)
        if _endpoints is None:
            _endpoints = self._endpoints(self._pub_reader if publishers else self._sub_reader)
        return [naming.ros_type_from_dds(e.type_name) for e in _endpoints if e.topic_name == dds_name]

    def check_graph(self) -> list[tuple[str, str, str]]:
        """Log (once each) endpoints on our topics whose type name differs from ours."""
        found = []
        ours = [(s.topic, s.type_name, True) for s in self._subscriptions]
        ours += [(p.topic, p.type_name, False) for p in self._publishers.values()]
        if not ours:
            return found
        # Read each builtin topic once per check, not once per endpoint of ours (this runs on
        # the spinning thread every GRAPH_CHECK_PERIOD_S, between taking samples).
        announced: dict[bool, list[Any]] = {}
        for topic, type_name, we_subscribe in ours:
            if we_subscribe not in announced:
                announced[we_subscribe] = self._endpoints(self._pub_reader if we_subscribe else self._sub_reader)
            for other in set(self.endpoint_types(topic, publishers=we_subscribe, _endpoints=announced[we_subscribe])):
                if other == type_name:
                    continue
                key = (topic, type_name, other)
                found.append(key)
                if key not in self._reported:
                    self._reported.add(key)
                    self.logger.error(
                        "type mismatch on %s: our %s uses %s but a %s uses %s; DDS will never match them",
                        topic, "subscription" if we_subscribe else "publisher", type_name,
                        "publisher" if we_subscribe else "subscription", other,
                    )
        return found

    def _wait_matched(self, topic: str, timeout: float, count: int, publishers: bool) -> int:
        topic = self.resolve_topic(topic)
        if publishers:
            ours = [s for s in self._subscriptions if s.topic == topic]
            role = "subscription"
        else:
            ours = [p for p in self._publishers.values() if p.topic == topic]
            role = "publisher"
        if not ours:
            raise ValueError(f"node {self.name!r} has no {role} on {topic}")
        ep = ours[0]

        def matched() -> int:
            return ep.matched_publishers if publishers else ep.matched_subscribers

        if self.spin_until(lambda: matched() >= count, timeout):
            return matched()
        others = sorted({t for t in self.endpoint_types(topic, publishers=publishers) if t != ep.type_name})
        raise unmatched_error(topic, ep.type_name, publishers, matched(), count, timeout, others)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        if self._closed:
            return
        self._shutdown.set()
        if self._rosout_handler is not None:
            self.logger.removeHandler(self._rosout_handler)
        self._closed = True
        participant = self._participant
        self._subscriptions.clear()
        self._publishers.clear()
        self._topics.clear()
        self._timers.clear()
        # Deleting the participant deletes every reader, writer, topic and condition it owns.
        participant.__del__()
        self.logger.debug("node %s shut down", self.name)
