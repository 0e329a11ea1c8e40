"""Plan text → parsed plan → safety gate → 3D grounding from depth → skills. ROS-free.

The executor only sees what a real executor node sees: the plan text, the observation the plan
was made from (RGB-D + camera info, stamped) and the :class:`~ivl_embodied.robot.interface.Robot` seam.
Every trajectory passes the e-stop and the arm's own limits (:class:`TrajectoryLimits`, from its
description unless given) before it is sent.
Targets come from the depth image via :func:`~ivl_embodied.perception.grounding.ground_box`, never from
simulator state. The report says, per step, what happened and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ivl_embodied.perception.grounding import (
    GroundedObject,
    GroundingConfig,
    GroundingError,
    ground_box,
)
from ivl_embodied.plan.safety import SafetyGate
from ivl_embodied.plan.schema import PlanParseError, parse_plan
from ivl_embodied.robot.interface import Observation, Robot
from ivl_embodied.robot.skills import Held, SkillFailure, Skills
from ivl_embodied.robot.trajectory import TrajectoryLimits, trajectory_violations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutcome:
    index: int
    action: str
    object: str
    status: str  # "ok" | "failed" | "skipped"
    reason: str = ""
    grounded: dict = field(default_factory=dict)  # name -> [x, y, z] (base frame, m)


@dataclass(frozen=True)
class ExecutionReport:
    ok: bool
    stage: str  # where it ended: "done" | "parse" | "safety" | "grounding" | "skill"
    reason: str
    steps: tuple[StepOutcome, ...] = ()

    def to_dict(self) -> dict:
        return {"ok": self.ok, "stage": self.stage, "reason": self.reason,
                "steps": [s.__dict__ for s in self.steps]}


class Executor:
    def __init__(self, robot: Robot, gate: SafetyGate | None = None, skills: Skills | None = None,
                 grounding: GroundingConfig | None = None, limits: TrajectoryLimits | None = None):
        self.robot = robot
        self.gate = gate or SafetyGate()
        self.limits = limits or robot.arm.trajectory_limits()
        self.skills = skills or Skills(robot, check_trajectory=self._check_traj)
        self.grounding = grounding or GroundingConfig()

    def _check_traj(self, traj) -> str | None:
        reasons = self.gate.estop_reasons() + trajectory_violations(traj, self.limits)
        return "; ".join(reasons) or None

    def _ground(self, name: str, box, obs: Observation, region: bool = False) -> GroundedObject:
        g = ground_box(box, obs.depth, obs.camera_info, self.grounding, region=region)
        v = self.gate.check_target(name, g.position)
        if not v.ok:
            raise _Refused(str(v))
        return g

    def execute(self, plan_text: str, obs: Observation) -> ExecutionReport:
        try:
            plan = parse_plan(plan_text)
        except PlanParseError as e:
            return ExecutionReport(False, "parse", f"plan does not parse: {e}")
        v = self.gate.check_plan(plan, obs.stamp, self.robot.now())
        if not v.ok:
            return ExecutionReport(False, "safety", f"plan refused: {v}")
        outcomes: list[StepOutcome] = []
        held: Held | None = None
        for i, step in enumerate(plan.steps):
            grounded: dict = {}
            try:
                if step.action == "pick":
                    if held is not None:
                        raise SkillFailure(f"pick {step.object!r}: already holding {held.phrase!r}")
                    g = self._ground(step.object, step.box, obs)
                    grounded[step.object] = np.round(g.position, 4).tolist()
                    held = self.skills.pick(step.object, g)
                elif step.action == "place":
                    if held is None:
                        raise SkillFailure(f"place {step.object!r}: the gripper holds nothing")
                    t = self._ground(step.target, step.target_box, obs)
                    grounded[step.target] = np.round(t.position, 4).tolist()
                    self.skills.place(held, step.target, t)
                    held = None
                else:  # push
                    if held is not None:
                        raise SkillFailure(f"push {step.object!r}: gripper still holds {held.phrase!r}")
                    g = self._ground(step.object, step.box, obs)
                    t = self._ground(step.target, step.target_box, obs, region=True)
                    grounded[step.object] = np.round(g.position, 4).tolist()
                    grounded[step.target] = np.round(t.position, 4).tolist()
                    self.skills.push(step.object, g, step.target, t)
            except (GroundingError, _Refused, SkillFailure) as e:
                stage = {GroundingError: "grounding", _Refused: "safety"}.get(type(e), "skill")
                reason = f"step {i} ({step.action} {step.object!r}): {e}"
                outcomes.append(StepOutcome(i, step.action, step.object, "failed", str(e), grounded))
                outcomes += [StepOutcome(j, s.action, s.object, "skipped")
                             for j, s in enumerate(plan.steps) if j > i]
                log.info("execution stopped: %s", reason)
                self._safe_home()
                return ExecutionReport(False, stage, reason, tuple(outcomes))
            outcomes.append(StepOutcome(i, step.action, step.object, "ok", "", grounded))
        self._safe_home()
        return ExecutionReport(True, "done", "", tuple(outcomes))

    def _safe_home(self) -> None:
        try:
            self.skills.home()
        except SkillFailure as e:
            log.warning("could not return home: %s", e)


class _Refused(RuntimeError):
    """A grounded target the safety gate refused."""
