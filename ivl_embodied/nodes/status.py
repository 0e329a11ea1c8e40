"""Task status, one way for every node: ``ivl_embodied_msgs/TaskStatus`` on ``/ivl/task_status``.

``state`` is a ``STATE_*`` name, ``reason`` a ``REASON_*`` value of the message (what a program
acts on: retry, give up, report), ``message`` the sentence a person reads.
"""

from __future__ import annotations

import time

from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import header

STATUS = "ivl_embodied_msgs/msg/TaskStatus"
TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED")


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


class StatusPublisher:
    """Publishes one task's progress: ``status(task_id, "REJECTED", "why", reason="busy", attempt=1)``."""

    def __init__(self, node, topic: str):
        self.publisher = node.create_publisher(STATUS, topic)
        self._valid_reasons = set(reasons().values())

    def __call__(self, task_id: str, state: str, message: str = "", reason: str = "", attempt: int = 0) -> None:
        S = msg_type(STATUS)
        code = getattr(S, f"STATE_{state}", None)
        if code is None:
            raise ValueError(f"unknown task state {state!r}")
        if reason not in self._valid_reasons:
            raise ValueError(f"unknown task status reason {reason!r}; TaskStatus.msg declares "
                             f"{sorted(self._valid_reasons)}")
        self.publisher.publish(S(header=header(time.time_ns()), task_id=task_id, state=code,
                            message=message, reason=reason, attempt=min(max(int(attempt), 0), 255)))
