"""``Plan`` ↔ ``ivl_embodied_msgs/ActionPlan``.

Absent values travel as empty fields: a step without ``box`` has an empty ``int16[] box``, a
step without ``target`` has ``target == ""`` (and the reverse on the way back). Boxes keep
InternVL's 0..1000 grounding frame.
"""

from __future__ import annotations

from typing import Any

from ivl_embodied.plan.schema import Plan, Step
from ivl_embodied.transport import msg_type

ACTION_PLAN = "ivl_embodied_msgs/msg/ActionPlan"
PLAN_STEP = "ivl_embodied_msgs/msg/PlanStep"


def _stamp(stamp: Any) -> Any:
    Time = msg_type("builtin_interfaces/msg/Time")
    if stamp is None:
        return Time()
    if isinstance(stamp, Time):
        return stamp
    if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp >= 0:  # nanoseconds
        return Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
    raise TypeError(f"stamp must be a builtin_interfaces/Time or int nanoseconds >= 0, got {stamp!r}")


def step_to_msg(step: Step) -> Any:
    return msg_type(PLAN_STEP)(
        action=step.action,
        object=step.object,
        target=step.target or "",
        box=list(step.box) if step.box is not None else [],
        target_box=list(step.target_box) if step.target_box is not None else [],
    )


def plan_to_msg(plan: Plan, task_id: str, instruction: str, raw_text: str, *,
                prefill_ms: float = 0.0, decode_ms: float = 0.0, generated_tokens: int = 0,
                stamp: Any = None, frame_id: str = "", embedding_stamp: Any = None) -> Any:
    """An ``ActionPlan`` message for ``plan`` (timings in ms; stamps as Time or int ns)."""
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan, got {type(plan).__name__}")
    for name, v in (("prefill_ms", prefill_ms), ("decode_ms", decode_ms)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    if isinstance(generated_tokens, bool) or not isinstance(generated_tokens, int) or not 0 <= generated_tokens < 2**32:
        raise ValueError(f"generated_tokens must be an int in 0..2**32-1, got {generated_tokens!r}")
    Header = msg_type("std_msgs/msg/Header")
    return msg_type(ACTION_PLAN)(
        header=Header(stamp=_stamp(stamp), frame_id=frame_id),
        task_id=task_id,
        instruction=instruction,
        steps=[step_to_msg(s) for s in plan.steps],
        raw_text=raw_text,
        embedding_stamp=_stamp(embedding_stamp),
        prefill_ms=float(prefill_ms),
        decode_ms=float(decode_ms),
        generated_tokens=generated_tokens,
    )


def msg_to_step(msg: Any, index: int = 0) -> Step:
    def box(values: Any, what: str) -> tuple[int, ...] | None:
        values = list(values)
        if not values:
            return None
        if len(values) != 4:
            raise ValueError(f"step {index}: {what} must have 4 values or none, got {values!r}")
        return tuple(int(v) for v in values)

    try:
        return Step(
            action=msg.action,
            object=msg.object,
            box=box(msg.box, "box"),
            target=msg.target or None,
            target_box=box(msg.target_box, "target_box"),
        )
    except ValueError as exc:
        raise ValueError(f"ActionPlan step {index} is not a valid plan step: {exc}") from exc


def msg_to_plan(msg: Any) -> Plan:
    """The ``Plan`` of an ``ActionPlan`` message (raises ``ValueError`` naming the bad step)."""
    return Plan(tuple(msg_to_step(s, i) for i, s in enumerate(msg.steps)))
