"""Task status, one way for every node: ``ivl_embodied_msgs/TaskStatus`` on ``/ivl/task_status``.

``state`` is a ``STATE_*`` name, ``reason`` a ``REASON_*`` value of the message (what a program
acts on: retry, give up, report), ``message`` the sentence a person reads.
"""

from __future__ import annotations

import collections
import time

from ivl_embodied.nodes.watchdog import TaskWatch, beat_id, incarnation, parse_beat
from ivl_embodied.plan.task_states import CAMERA_NOT_READY as CAMERA_NOT_READY  # re-exported
from ivl_embodied.plan.task_states import CAMERA_RETRIES as CAMERA_RETRIES
from ivl_embodied.plan.task_states import TERMINAL as TERMINAL  # one list of final states, re-exported
from ivl_embodied.transport import QosProfile, msg_type
from ivl_embodied.transport.convert import header

STATUS = "ivl_embodied_msgs/msg/TaskStatus"
STATUS_QOS = QosProfile("reliable", 256, "transient_local")
"""Publishers and readers of task status keep 256 samples: a burst of refusals must not push out statuses
a slow reader has not taken yet (keep-last 10 lost 39 of 100 in the fault suite). Transient local: a reader
that matches a status writer late (discovery between two processes can take seconds on a loaded host) still
gets what it missed; with a volatile one the executor's watchdog missed a planner's RECEIVED and failed a task
the planner was planning ("did not acknowledge", seen with Fast DDS under load). Readers filter by task id."""
REQUEST_QOS = QosProfile("reliable", 256, "volatile")
"""Task requests stay volatile: a planner that starts must not plan the requests it missed."""


def state_name(code: int) -> str:
    """``STATE_*`` name of a state code, without the prefix (``UNKNOWN(n)`` for others)."""
    S = msg_type(STATUS)
    for name in dir(S):
        if name.startswith("STATE_") and getattr(S, name) == code:
            return name[len("STATE_"):]
    return f"UNKNOWN({code})"


def reasons() -> dict[str, str]:
    """``{REASON_* name: value}`` as the message definition declares them."""
    S = msg_type(STATUS)
    return {name: getattr(S, name) for name in dir(S) if name.startswith("REASON_")}



PLANNER_HEARTBEAT = "ivl/planner/heartbeat"
ESTOP_LATCHED_QOS = QosProfile("reliable", 1, "transient_local")
"""An e-stop publisher that keeps its last command for nodes that start later (the operator CLI's)."""


def subscribe_estop(node, topic: str, callback) -> None:
    """Hear e-stop commands from every publisher: a transient-local one (its last command reaches a
    node that starts after it was sent, so a restarted executor comes up latched) and a volatile one
    (``ros2 topic pub``'s default, which a transient-local reader would not match: DDS requires the
    offered durability to be at least the requested). A command heard twice is applied twice, which
    changes nothing."""
    node.create_subscription("std_msgs/msg/Bool", topic, callback)
    node.create_subscription("std_msgs/msg/Bool", topic, callback, ESTOP_LATCHED_QOS)


def follow_planner(node, topic: str = PLANNER_HEARTBEAT) -> collections.deque:
    """The last few planner heartbeats ``node`` heard (empty until one arrives; it never grows past
    ``maxlen``): what an operator waits for before sending tasks. A planner beats only once its task
    subscription exists; "someone subscribes to /ivl/task" is not enough, since the executor's watchdog
    subscribes there too."""
    beats: collections.deque = collections.deque(maxlen=8)
    node.create_subscription("std_msgs/msg/Header", topic, beats.append)
    return beats


class StatusPublisher:
    """Publishes one task's progress: ``status(task_id, "REJECTED", "why", reason="busy", attempt=1)``."""

    def __init__(self, node, topic: str):
        self.node = node
        self.publisher = node.create_publisher(STATUS, topic, STATUS_QOS)
        self._valid_reasons = set(reasons().values())

    def __call__(self, task_id: str, state: str, message: str = "", reason: str = "", attempt: int = 0,
                 step: int = 0) -> None:
        S = msg_type(STATUS)
        code = getattr(S, f"STATE_{state}", None)
        if code is None:
            raise ValueError(f"unknown task state {state!r}")
        if reason not in self._valid_reasons:
            raise ValueError(f"unknown task status reason {reason!r}; TaskStatus.msg declares "
                             f"{sorted(self._valid_reasons)}")
        self.publisher.publish(S(header=header(self.node.now_ns()), task_id=task_id, state=code,
                            message=message, reason=reason, attempt=min(max(int(attempt), 0), 255),
                            step=min(max(int(step), 0), 255)))


class Watchdog:
    """Fails the tasks of another node that went away (:mod:`ivl_embodied.nodes.watchdog`): beats this
    node's heartbeat, follows the other's and every task status, and publishes FAILED ``node_lost``
    for orphaned tasks, through ``status``."""

    def __init__(self, node, name: str, status: StatusPublisher, status_topic: str, own_topic: str,
                 watched: str, watched_topic: str, timeout_s: float, task_topic: str = ""):
        self.status, self.name = status, name
        self.watch = TaskWatch(watched, timeout_s)
        self.own = beat_id(name, incarnation())
        beats = node.create_publisher("std_msgs/msg/Header", own_topic)
        node.create_timer(0.1, lambda: beats.publish(header(time.time_ns(), self.own)))
        node.create_subscription("std_msgs/msg/Header", watched_topic, self.on_beat)
        node.create_subscription(STATUS, status_topic, self.on_status, STATUS_QOS)
        if task_topic:  # the planner's tasks begin with the request, before it says anything
            node.create_subscription("ivl_embodied_msgs/msg/TaskRequest", task_topic, self.on_request, REQUEST_QOS)
        node.create_timer(0.25, self.check)

    def on_beat(self, msg) -> None:
        parsed = parse_beat(msg.frame_id)
        if parsed is not None:
            self.watch.beat(parsed[1], time.monotonic())

    def on_status(self, msg) -> None:
        self.watch.status(msg.task_id, state_name(msg.state), int(msg.attempt), time.monotonic())

    def on_request(self, msg) -> None:
        """An operator's task request (not a follow-up): the planner owes it a status."""
        if int(msg.attempt) <= 1 and int(msg.candidate) == 0 and msg.task_id not in self.watch.tasks:
            self.watch.status(msg.task_id, "REQUESTED", 1, time.monotonic())

    def check(self) -> None:
        for task_id, attempt, why in self.watch.orphans(time.monotonic()):
            self.status(task_id, "FAILED", why, reason="node_lost", attempt=attempt)
