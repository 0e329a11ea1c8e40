"""What the operator console shows, and what it asks of the graph. ROS-free.

The console node turns messages into plain dicts and hands them to :class:`Console`; every update returns
the events the browsers get (JSON-able dicts). Commands from a browser (:meth:`Console.command`) are checked
here, and what they ask of the graph goes through a :class:`Sink` (the node publishes it):

* ``{"op": "task", "instruction": "..."}``: a new task with a fresh id. A refusal for want of a current view
  (:data:`CAMERA_NOT_READY`) is asked again a second later (:meth:`Console.tick`), as the operator CLI does.
* ``{"op": "cancel", "task_id": "..."}``: cancel that task (the executor holds the arm where it is).
* ``{"op": "estop", "engage": true | false}``: latch the e-stop, or reset it.

A task's view holds every status it went through (state, attempt, step, message, reason), its plans (each
step's action, phrases and boxes in InternVL's 0-1000 frame) and the 3D poses the executor grounded them to.
Tasks sent by other clients (the CLI, an action client) are shown too: the console follows the status topic.
"""

from __future__ import annotations

import collections
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivl_embodied.language.instruction import MAX_INSTRUCTION_CHARS
from ivl_embodied.plan import vocabulary
from ivl_embodied.plan.task_states import CAMERA_NOT_READY, CAMERA_RETRIES, TERMINAL

RETRY_AFTER_S = 1.0
MAX_TASKS = 50  # task views kept (the oldest ended one goes first)
MAX_STATES = 200  # statuses kept per task
MAX_PLANS = 20  # plans kept per task (candidates and attempts)
EXAMPLES = ("put the red cube in the green bowl", "stack the blue cube on the yellow cylinder",
            "push the purple sphere into the orange zone")


class Sink(Protocol):
    """Where the console's commands go (the node publishes them)."""

    def send_task(self, task_id: str, instruction: str) -> None: ...

    def send_cancel(self, task_id: str) -> None: ...

    def send_estop(self, engage: bool) -> None: ...


class CommandError(ValueError):
    """A browser's command that cannot be carried out; the message names the value."""


@dataclass
class TaskView:
    task_id: str
    instruction: str
    mine: bool  # sent from this console (asked again when the camera is not ready)
    states: list[dict] = field(default_factory=list)
    plans: list[dict] = field(default_factory=list)
    grounded: dict | None = None  # the latest grounded plan
    final: str | None = None  # the final state's name, once there is one
    retries_left: int = CAMERA_RETRIES
    retry_at: float | None = None  # monotonic time of the next ask, while one is due

    def to_dict(self) -> dict:
        return {"task_id": self.task_id, "instruction": self.instruction, "mine": self.mine,
                "states": self.states, "plans": self.plans, "grounded": self.grounded, "final": self.final,
                "retrying": self.retry_at is not None}


def plan_dict(task_id: str, instruction: str, attempt: int, candidate: int, steps: list[dict], raw_text: str,
              embedding_stamp_s: float) -> dict:
    """A plan as the browser draws it. ``steps``: ``{"action", "object", "target", "box", "target_box"}``
    with boxes as ``[x1, y1, x2, y2]`` (0-1000) or ``[]``, and ``"pose": [x, y, z]`` (metres, base frame)
    where the executor grounded the step."""
    return {"task_id": task_id, "instruction": instruction, "attempt": int(attempt), "candidate": int(candidate),
            "steps": steps, "raw_text": raw_text, "embedding_stamp": round(float(embedding_stamp_s), 3)}


def vocabulary_dict() -> dict:
    return {"line": vocabulary.describe(), "colors": list(vocabulary.COLORS),
            "graspable": list(vocabulary.GRASPABLE), "containers": list(vocabulary.CONTAINERS),
            "zones": list(vocabulary.ZONES), "actions": ["pick", "place", "push"], "examples": list(EXAMPLES),
            "max_chars": MAX_INSTRUCTION_CHARS}


class Console:
    """The console's state: tasks, plans, e-stop, what the stack's nodes are doing. Thread-safe: the node's
    callbacks and the web server's handlers both call it."""

    def __init__(self, sink: Sink, retries: int = CAMERA_RETRIES, new_id=None):
        self.sink = sink
        self.retries = retries
        self.new_id = new_id or (lambda: uuid.uuid4().hex[:8])
        self.tasks: collections.OrderedDict[str, TaskView] = collections.OrderedDict()
        self.estop: bool | None = None  # None until the executor said
        self.seen: dict[str, float] = {}  # "camera" | "planner" | "executor" -> monotonic time last heard
        self.camera_size: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # -- from the graph ---------------------------------------------------------------------------

    def _task(self, task_id: str, instruction: str = "", mine: bool = False) -> TaskView:
        view = self.tasks.get(task_id)
        if view is None:
            view = self.tasks[task_id] = TaskView(task_id, instruction, mine, retries_left=self.retries)
            while len(self.tasks) > MAX_TASKS:
                old = next((k for k, v in self.tasks.items() if v.final is not None), next(iter(self.tasks)))
                del self.tasks[old]
        elif instruction and not view.instruction:
            view.instruction = instruction
        return view

    def on_status(self, task_id: str, state: str, message: str, reason: str, attempt: int, step: int,
                  now: float, stamp: float | None = None) -> list[dict]:
        """A ``TaskStatus`` (state by name, ``stamp`` its header's, s); returns the events to send. Statuses
        of one task come from several nodes and can cross on the way: the view keeps them in stamp order."""
        with self._lock:
            view = self._task(task_id)
            entry = {"state": state, "message": message, "reason": reason, "attempt": int(attempt),
                     "step": int(step), "stamp": stamp}
            if view.final is not None and state not in TERMINAL:
                return []  # a late progress note of an ended task (statuses of one task can cross)
            if state == "REJECTED" and reason in CAMERA_NOT_READY and view.mine and view.retries_left > 0 \
                    and view.final is None:
                view.retries_left -= 1
                view.retry_at = now + RETRY_AFTER_S
                entry["message"] = f"{message}; asking again in {RETRY_AFTER_S:.0f} s"
            elif state in TERMINAL:
                view.final, view.retry_at = state, None
            i = len(view.states)
            while stamp is not None and i > 0 and (view.states[i - 1]["stamp"] or 0.0) > stamp:
                i -= 1
            view.states.insert(i, entry)
            del view.states[:-MAX_STATES]
            return [{"type": "task", "task": view.to_dict()}]

    def on_plan(self, plan: dict) -> list[dict]:
        """An ``ActionPlan`` (:func:`plan_dict`)."""
        with self._lock:
            view = self._task(plan["task_id"], plan["instruction"])
            view.plans.append(plan)
            del view.plans[:-MAX_PLANS]
            return [{"type": "task", "task": view.to_dict()}]

    def on_grounded(self, plan: dict) -> list[dict]:
        """The executor's grounded plan (:func:`plan_dict`, steps with ``pose``)."""
        with self._lock:
            view = self._task(plan["task_id"], plan["instruction"])
            view.grounded = plan
            return [{"type": "task", "task": view.to_dict()}]

    def on_estop(self, latched: bool) -> list[dict]:
        with self._lock:
            self.estop = bool(latched)
            return [{"type": "estop", "latched": self.estop}]

    def heard(self, who: str, now: float, size: tuple[int, int] | None = None) -> None:
        """A camera frame, or a node's heartbeat, just arrived."""
        with self._lock:
            self.seen[who] = now
            if size is not None:
                self.camera_size = size

    # -- to the browser ---------------------------------------------------------------------------

    def health(self, now: float) -> dict:
        """How long ago each part of the stack was last heard (None: never)."""
        with self._lock:
            ages = {who: (round(now - self.seen[who], 1) if who in self.seen else None)
                    for who in ("camera", "planner", "executor")}
            return {"type": "health", "ages": ages, "camera_size": self.camera_size, "estop": self.estop}

    def snapshot(self, now: float) -> dict:
        """Everything a browser that just connected needs."""
        health = self.health(now)
        with self._lock:
            return {"type": "snapshot", "tasks": [v.to_dict() for v in self.tasks.values()],
                    "estop": self.estop, "health": health, "vocabulary": vocabulary_dict()}

    # -- from the browser -------------------------------------------------------------------------

    def command(self, data: Any, now: float) -> list[dict]:
        """Carry out one command from a browser; raises :class:`CommandError` naming what is wrong."""
        if not isinstance(data, dict):
            raise CommandError(f"a command is a JSON object, got {data!r:.80}")
        op = data.get("op")
        if op == "task":
            text = data.get("instruction")
            if not isinstance(text, str) or not text.strip():
                raise CommandError(f"type a task first (got {text!r:.80})")
            text = text.strip()
            if len(text) > MAX_INSTRUCTION_CHARS:
                raise CommandError(f"a task is at most {MAX_INSTRUCTION_CHARS} characters, got {len(text)}")
            return self.submit(text)
        if op == "cancel":
            task_id = data.get("task_id")
            with self._lock:
                view = self.tasks.get(task_id) if isinstance(task_id, str) else None
                if view is None:
                    raise CommandError(f"no task {task_id!r:.40} to cancel")
                if view.final is not None:
                    raise CommandError(f"task {task_id} already ended {view.final}")
                view.retry_at = None  # a cancelled task is not asked again
            self.sink.send_cancel(task_id)
            return []
        if op == "estop":
            engage = data.get("engage")
            if not isinstance(engage, bool):
                raise CommandError(f"estop takes engage: true or false, got {engage!r:.40}")
            self.sink.send_estop(engage)
            return []
        raise CommandError(f"unknown command {op!r:.40}; the console sends task, cancel and estop")

    def submit(self, instruction: str, task_id: str | None = None) -> list[dict]:
        """Send a task (a fresh id unless given) and follow it as this console's own."""
        with self._lock:
            task_id = task_id or self.new_id()
            view = self._task(task_id, instruction, mine=True)
            view.states.append({"state": "SENT", "message": "sent to the planner", "reason": "", "attempt": 0,
                                "step": 0, "stamp": None})
            event = {"type": "task", "task": view.to_dict()}
        self.sink.send_task(task_id, instruction)
        return [event]

    def tick(self, now: float) -> None:
        """Ask again the tasks whose retry is due (call a few times a second)."""
        due = []
        with self._lock:
            for view in self.tasks.values():
                if view.retry_at is not None and now >= view.retry_at:
                    view.retry_at = None
                    due.append((view.task_id, view.instruction))
        for task_id, text in due:
            self.sink.send_task(task_id, text)
