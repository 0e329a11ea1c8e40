"""Simulator rewards for GSPO: how good is a plan text for a task record?

``reward = w_parse * parsed + w_grounding * grounding + w_success * success`` where

* ``parsed`` is 1 when :func:`~ivl_embodied.plan.schema.parse_plan` accepts the text, else 0;
  an unparseable plan gets reward **0** overall (nothing else can be judged);
* ``grounding`` is ``sum IoU / max(#reference boxes, #predicted boxes)`` in 0..1: each box of the
  oracle plan for the same scene (``box`` / ``target_box`` of step i) is matched to the predicted
  box in the same step and role (IoU 0 when absent); dividing by the larger count also charges
  boxes the oracle does not have;
* ``success`` is the simulator's verdict: the plan is executed by
  :func:`~ivl_embodied.sim.episode.run_episode` and judged by the task's success predicate.
  ``execute=False`` skips it (IoU-only reward, ~100x faster) and the term is 0.

Defaults (0.1 / 0.4 / 0.5) put the maximum at 1.0 with execution and 0.5 without. Everything is a
function of (plan text, task record, reference plan): the scene is rebuilt from the task's seed
and MuJoCo is deterministic, so the same inputs always give the same reward.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivl_embodied.plan.schema import Plan, PlanParseError, parse_plan
from ivl_embodied.sim.episode import JUDGE_SETTLE_S
from ivl_embodied.train.sft import box_iou

__all__ = ["RewardWeights", "RewardBreakdown", "grounding_score", "plan_reward"]


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms; ``execute=False`` drops the (slow) simulated execution."""

    parse: float = 0.1
    grounding: float = 0.4
    success: float = 0.5
    execute: bool = True
    settle_s: float = JUDGE_SETTLE_S  # what run_episode lets the scene settle after the plan before judging

    def __post_init__(self) -> None:
        for name in ("parse", "grounding", "success"):
            v = getattr(self, name)
            if not v >= 0.0:
                raise ValueError(f"reward weight {name} must be >= 0, got {v!r}")
        if self.parse + self.grounding + self.success <= 0:
            raise ValueError(f"reward weights must not all be 0, got {self}")
        if not 0.0 <= self.settle_s <= 5.0:
            raise ValueError(f"settle_s must be in 0..5, got {self.settle_s!r}")

    @property
    def max_reward(self) -> float:
        return self.parse + self.grounding + (self.success if self.execute else 0.0)


@dataclass(frozen=True)
class RewardBreakdown:
    reward: float
    parsed: float
    grounding: float
    success: float  # 0 when execution was skipped
    executed: bool
    reason: str = ""  # parse error or why the episode failed


def _boxes(plan: Plan) -> list[tuple[int, str, tuple]]:
    return [(i, role, getattr(s, role)) for i, s in enumerate(plan.steps) for role in ("box", "target_box")
            if getattr(s, role) is not None]


def grounding_score(predicted: Plan, reference: Plan) -> float:
    """``sum IoU(ref box, predicted box in the same step/role) / max(#ref boxes, #pred boxes)``."""
    ref, pred = _boxes(reference), _boxes(predicted)
    by_slot = {(i, role): box for i, role, box in pred}
    total = sum(box_iou(by_slot[(i, role)], box) for i, role, box in ref if (i, role) in by_slot)
    return total / max(len(ref), len(pred), 1)


def plan_reward(plan_text: str, task, reference_plan: str, weights: RewardWeights = RewardWeights()) -> RewardBreakdown:
    """Reward of ``plan_text`` for ``task`` (a :class:`~ivl_embodied.sim.tasks.Task` or its record
    dict); ``reference_plan`` is the oracle plan text of the same scene (``PlanDataset`` stores it)."""
    try:
        predicted = parse_plan(plan_text)
    except PlanParseError as e:
        return RewardBreakdown(0.0, 0.0, 0.0, 0.0, False, f"unparseable: {e}")
    reference = parse_plan(reference_plan)  # the oracle's plan must parse; an error here is a data bug
    grounding = grounding_score(predicted, reference)
    success, reason = 0.0, ""
    if weights.execute:
        from ivl_embodied.sim.episode import run_episode
        from ivl_embodied.sim.planners import FixedPlanner
        from ivl_embodied.sim.tasks import Task, parse_task

        task = task if isinstance(task, Task) else parse_task(
            {k: task[k] for k in ("seed", "instruction", "goal")})
        result = run_episode(task, FixedPlanner(plan_text), settle_s=weights.settle_s)
        success, reason = float(result.success), result.reason
    reward = weights.parse * 1.0 + weights.grounding * grounding + weights.success * success
    return RewardBreakdown(reward, 1.0, grounding, success, weights.execute, reason)
