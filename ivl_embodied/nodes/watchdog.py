"""Every accepted task ends in a final state, also when the node handling it dies.

A task in progress belongs to one node: REQUESTED (an operator sent it; the executor watches
the task topic too), RECEIVED (the planner queued it) and PLANNING to the planner, PLANNED / EXECUTING
to the executor (the plan is on its way there). A REQUESTED task the planner does not acknowledge
within ``timeout_s`` is lost even while the planner beats: it was not listening (not yet matched,
restarting). Each node beats a heartbeat (``std_msgs/Header`` at
10 Hz, ``frame_id`` = ``node/incarnation``, a new incarnation per process start). The planner
watches the executor's tasks and the executor the planner's: a task whose owner has been silent for
``timeout_s``, or whose owner came back as a new incarnation (it was restarted and forgot the
task), is failed by the watcher with reason ``node_lost``. Without the owner's heartbeat ever seen,
the clock starts when the watcher first saw the task.

:class:`TaskWatch` is the bookkeeping, free of any middleware; the nodes feed it the statuses and
heartbeats they receive and publish what :meth:`TaskWatch.orphans` returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ivl_embodied.plan.task_states import TERMINAL

OWNER = {"REQUESTED": "planner", "RECEIVED": "planner", "PLANNING": "planner", "PLANNED": "executor",
         "EXECUTING": "executor"}


def incarnation() -> str:
    """A fresh id for this process's heartbeats."""
    return uuid.uuid4().hex[:12]


def beat_id(node: str, inc: str) -> str:
    return f"{node}/{inc}"


def parse_beat(frame_id: str) -> tuple[str, str] | None:
    node, sep, inc = frame_id.partition("/")
    return (node, inc) if sep and node and inc else None


@dataclass
class _Task:
    state: str  # owned by the watched node (OWNER)
    since: float  # when the watcher saw this state
    incarnation: str | None  # the owner's incarnation when the state was seen (None: none seen yet)
    attempt: int


class TaskWatch:
    """Tasks in progress owned by ``watched`` ("planner" or "executor"), and that node's heartbeats."""

    def __init__(self, watched: str, timeout_s: float = 3.0, max_tasks: int = 1024):
        if watched not in ("planner", "executor"):
            raise ValueError(f"watched must be 'planner' or 'executor', got {watched!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.watched, self.timeout_s, self.max_tasks = watched, timeout_s, max_tasks
        self.tasks: dict[str, _Task] = {}
        self.last_beat: float | None = None
        self.current: str | None = None  # the watched node's incarnation, from its heartbeats

    def beat(self, inc: str, now: float) -> None:
        self.last_beat, self.current = now, inc

    def status(self, task_id: str, state: str, attempt: int, now: float) -> None:
        """A status seen on the status topic (any publisher)."""
        if state in TERMINAL or OWNER.get(state) != self.watched:
            self.tasks.pop(task_id, None)  # ended, or now someone else's
            return
        old = self.tasks.get(task_id)
        if state == "REQUESTED" and old is not None:
            return  # the planner said something already (statuses and requests race)
        if old is not None and old.state == state and old.attempt == attempt:
            return  # the same progress again (e.g. a second EXECUTING of one attempt): the clock runs on
        self.tasks[task_id] = _Task(state, now, self.current, attempt)
        while len(self.tasks) > self.max_tasks:
            self.tasks.pop(next(iter(self.tasks)))

    def orphans(self, now: float) -> list[tuple[str, int, str]]:
        """(task_id, attempt, why) of every task whose owner went away; they are forgotten here."""
        out, heard = [], self.last_beat
        for task_id, t in list(self.tasks.items()):
            if t.state == "REQUESTED" and now - t.since > self.timeout_s:
                why = (f"the {self.watched} node did not acknowledge the task within {self.timeout_s:.1f} s "
                       f"(not running, restarting, or not yet connected); send it again")
            elif t.incarnation is not None and self.current is not None and self.current != t.incarnation:
                why = (f"the {self.watched} node restarted while the task was {t.state} (it forgets tasks in "
                       f"progress); send the task again")
            elif heard is None and now - t.since > self.timeout_s:
                why = f"no {self.watched} node is running: no heartbeat in {now - t.since:.1f} s of {t.state}"
            elif heard is not None and now - max(heard, t.since) > self.timeout_s:
                why = (f"the {self.watched} node stopped answering while the task was {t.state} "
                       f"(no heartbeat for {now - heard:.1f} s)")
            else:
                continue
            out.append((task_id, t.attempt, why))
            del self.tasks[task_id]
        return out
