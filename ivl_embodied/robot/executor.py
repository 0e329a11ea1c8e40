"""Plan text → parsed plan → safety gate → 3D grounding → scene check → skills → goal check. ROS-free.

The executor only sees what a real executor node sees: the plan text, the observation the plan
was made from (RGB-D + camera info, stamped) and the :class:`~ivl_embodied.robot.interface.Robot` seam.
Targets come from the depth image via :func:`~ivl_embodied.perception.grounding.ground_box`, never from
simulator state.

1. Every box of the plan is grounded and checked **before anything moves**: the workspace bounds,
   and (``check_scene``) that what stands there looks like the plan's phrase
   (:func:`~ivl_embodied.perception.scene.check_phrase`). A mismatch ends the execution at stage
   ``check`` with no motion at all.
2. The skills run; every trajectory passes the e-stop and the arm's own limits
   (:class:`TrajectoryLimits`, from its description unless given) before it is sent.
   ``on_grounded(plan, poses)`` hears where each step will act once every check has passed; with
   ``dry_run`` the execution ends there (stage ``dry_run``): nothing moves.
3. (``verify_goal``) A fresh observation after the motion must show the goal reached
   (:func:`~ivl_embodied.perception.scene.verify_goal`); ``report.ok`` means exactly that.
   Otherwise the execution ends at stage ``verify`` with what was seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ivl_embodied.perception.grounding import (
    GroundedObject,
    GroundingConfig,
    GroundingError,
    ground_box,
)
from ivl_embodied.perception.scene import SceneCheckConfig, check_phrase, goal_of_plan, verify_goal
from ivl_embodied.plan.safety import SafetyGate
from ivl_embodied.plan.schema import Plan, PlanParseError, parse_plan
from ivl_embodied.plan.schema import Step as PlanStep
from ivl_embodied.robot.interface import Observation, Robot
from ivl_embodied.robot.skills import Held, SkillFailure, Skills
from ivl_embodied.robot.trajectory import TrajectoryLimits, trajectory_violations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorConfig:
    check_scene: bool = True  # refuse, before moving, boxes whose contents do not match their phrase
    verify_goal: bool = True  # ok only when a fresh frame shows the goal reached
    dry_run: bool = False  # check and ground, report the poses, move nothing
    scene: SceneCheckConfig = field(default_factory=SceneCheckConfig)


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
    stage: str  # where it ended: "done" | "parse" | "safety" | "grounding" | "check" | "skill" | "verify" | "dry_run"
    reason: str
    steps: tuple[StepOutcome, ...] = ()
    moved: bool = False  # a motion was commanded
    verified: bool = False  # a fresh frame showed the goal reached

    def to_dict(self) -> dict:
        return {"ok": self.ok, "stage": self.stage, "reason": self.reason, "moved": self.moved,
                "verified": self.verified, "steps": [s.__dict__ for s in self.steps]}


class Executor:
    def __init__(self, robot: Robot, gate: SafetyGate | None = None, skills: Skills | None = None,
                 grounding: GroundingConfig | None = None, limits: TrajectoryLimits | None = None,
                 config: ExecutorConfig | None = None):
        self.robot = robot
        self.gate = gate or SafetyGate()
        self.limits = limits or robot.arm.trajectory_limits()
        self.skills = skills or Skills(robot, check_trajectory=self._check_traj, check_gripper=self._check_gripper)
        self.grounding = grounding or GroundingConfig()
        self.cfg = config or ExecutorConfig()

    def _check_gripper(self) -> str | None:
        return "; ".join(self.gate.estop_reasons()) or None

    def _check_traj(self, traj) -> str | None:
        reasons = self.gate.estop_reasons() + trajectory_violations(traj, self.limits)
        return "; ".join(reasons) or None

    def _ground(self, name: str, box, obs: Observation, region: bool = False) -> GroundedObject:
        g = ground_box(box, obs.depth, obs.camera_info, self.grounding, region=region)
        v = self.gate.check_target(name, g.position)
        if not v.ok:
            raise _Refused(str(v))
        if self.cfg.check_scene:
            why = check_phrase(name, g, obs.rgb, obs.depth, obs.camera_info, self.cfg.scene, box=box)
            if why:
                raise _Mismatch(why)
        return g

    def ground_plan(self, plan: Plan, obs: Observation) -> list[dict[str, GroundedObject]]:
        """Every step's grounded things, ``{"object": g, "target": g}`` as the action has them;
        raises ``GroundingError``, ``_Refused`` (workspace) or ``_Mismatch`` (scene check)."""
        out = []
        for i, step in enumerate(plan.steps):
            try:
                if step.action == "pick":
                    out.append({"object": self._ground(step.object, step.box, obs)})
                elif step.action == "place":
                    out.append({"target": self._ground(step.target, step.target_box, obs)})
                else:
                    out.append({"object": self._ground(step.object, step.box, obs),
                                "target": self._ground(step.target, step.target_box, obs, region=True)})
            except (GroundingError, _Refused, _Mismatch) as e:
                raise type(e)(f"step {i} ({step.action} {step.object!r}): {e}") from None
        return out

    def execute(self, plan_text: str, obs: Observation,
                on_step: Callable[[int, PlanStep], None] | None = None,
                on_grounded: Callable[[Plan, list[list[float]]], None] | None = None) -> ExecutionReport:
        """Check, ground, run and verify ``plan_text`` on ``obs``; ``on_grounded(plan, poses)`` is called
        once every step is grounded and checked (before anything moves), ``on_step(i, step)`` before
        step ``i`` (0-based) moves."""
        try:
            plan = parse_plan(plan_text)
        except PlanParseError as e:
            return ExecutionReport(False, "parse", f"plan does not parse: {e}")
        v = self.gate.check_plan(plan, obs.stamp, self.robot.now())
        if not v.ok:
            return ExecutionReport(False, "safety", f"plan refused: {v}")
        try:
            grounded = self.ground_plan(plan, obs)
        except (GroundingError, _Refused, _Mismatch) as e:
            stage = {GroundingError: "grounding", _Refused: "safety", _Mismatch: "check"}[type(e)]
            log.info("execution refused before any motion: %s", e)
            return ExecutionReport(False, stage, str(e))
        poses = step_poses(plan, grounded)
        if on_grounded is not None:
            on_grounded(plan, poses)
        if self.cfg.dry_run:
            where = "; ".join(f"{s.action} {s.object!r} {'at' if s.action == 'pick' else 'to'} "
                              f"({', '.join(f'{v:.3f}' for v in p)}) m"
                              for s, p in zip(plan.steps, poses, strict=True))
            steps = tuple(StepOutcome(i, s.action, s.object, "skipped", "dry run",
                                      {k: np.round(x.position, 4).tolist() for k, x in g.items()})
                          for i, (s, g) in enumerate(zip(plan.steps, grounded, strict=True)))
            return ExecutionReport(False, "dry_run", f"dry run: the plan passed its checks and was grounded: {where}; "
                                                     "nothing was sent to the robot", steps)
        outcomes: list[StepOutcome] = []
        held: Held | None = None
        for i, (step, g) in enumerate(zip(plan.steps, grounded, strict=True)):
            where = {step.object if k == "object" else step.target: np.round(x.position, 4).tolist()
                     for k, x in g.items()}
            try:
                if on_step is not None:
                    on_step(i, step)
                if step.action == "pick":
                    if held is not None:
                        raise SkillFailure(f"pick {step.object!r}: already holding {held.phrase!r}")
                    held = self.skills.pick(step.object, g["object"])
                elif step.action == "place":
                    if held is None:
                        raise SkillFailure(f"place {step.object!r}: the gripper holds nothing")
                    self.skills.place(held, step.target, g["target"])
                    held = None
                else:  # push
                    if held is not None:
                        raise SkillFailure(f"push {step.object!r}: gripper still holds {held.phrase!r}")
                    self.skills.push(step.object, g["object"], step.target, g["target"])
            except SkillFailure as e:
                reason = f"step {i} ({step.action} {step.object!r}): {e}"
                outcomes.append(StepOutcome(i, step.action, step.object, "failed", str(e), where))
                outcomes += [StepOutcome(j, s.action, s.object, "skipped")
                             for j, s in enumerate(plan.steps) if j > i]
                log.info("execution stopped: %s", reason)
                self._safe_home()
                return ExecutionReport(False, "skill", reason, tuple(outcomes), moved=True)
            outcomes.append(StepOutcome(i, step.action, step.object, "ok", "", where))
        self._safe_home()
        if not self.cfg.verify_goal:
            return ExecutionReport(True, "done", "", tuple(outcomes), moved=True)
        why = self._verify(plan, grounded)
        if why:
            log.info("goal not verified: %s", why)
            return ExecutionReport(False, "verify", f"goal not verified: {why}", tuple(outcomes), moved=True)
        return ExecutionReport(True, "done", "", tuple(outcomes), moved=True, verified=True)

    def _verify(self, plan: Plan, grounded: list[dict[str, GroundedObject]]) -> str | None:
        goal = goal_of_plan(plan.steps)
        if goal is None:
            return f"the plan {[s.action for s in plan.steps]} is not a goal the scene check knows"
        kind, obj, target_phrase = goal
        before, target = grounded[0]["object"], grounded[-1]["target"]
        obs = self.robot.fresh_observation()  # a frame taken after the motion
        return verify_goal(kind, obj, before, target, obs.rgb, obs.depth, obs.camera_info, self.cfg.scene,
                           target_phrase=target_phrase)

    def _safe_home(self) -> None:
        try:
            self.skills.home()
        except SkillFailure as e:
            log.warning("could not return home: %s", e)


def step_poses(plan: Plan, grounded: list[dict[str, GroundedObject]]) -> list[list[float]]:
    """Where each step acts, [x, y, z] in the base frame (m): the object a pick takes, the target a
    place or a push brings its object to."""
    return [np.round(g["object" if step.action == "pick" else "target"].position, 4).tolist()
            for step, g in zip(plan.steps, grounded, strict=True)]


class _Refused(RuntimeError):
    """A grounded target the safety gate refused."""


class _Mismatch(RuntimeError):
    """What stands in a box does not look like the plan's phrase."""
