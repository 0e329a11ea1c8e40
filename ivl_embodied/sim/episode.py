"""One episode: build the task's scene, ask the planner, execute the plan, judge success."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ivl_embodied.language.instruction import InstructionRefused
from ivl_embodied.robot.executor import Executor, ExecutorConfig
from ivl_embodied.sim.recording import EpisodeRecorder
from ivl_embodied.sim.sim_robot import SimRobot
from ivl_embodied.sim.tasks import Task, scene_for, success
from ivl_embodied.sim.world import SETTLE_S, SimWorld

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeResult:
    task: Task
    success: bool  # the stack said SUCCEEDED and the simulator's own predicate holds
    reason: str  # why it failed (execution, check, refusal or predicate); "" on success
    stage: str
    plan_text: str  # the last plan executed (or proposed)
    wall_s: float
    sim_s: float
    physics_steps: int
    execution: dict
    recording: dict | None = None
    status: str = ""  # what the stack reported: SUCCEEDED | FAILED | REJECTED
    attempts: int = 0  # plans executed (motion), 0 when refused before moving
    goal_reached: bool = False  # the simulator's predicate, whatever the stack said
    history: tuple[dict, ...] = ()  # per attempt: stage, reason, plan, candidates checked

    @property
    def false_success(self) -> bool:
        """The stack reported SUCCEEDED but the goal does not hold: the one thing it must never do."""
        return self.status == "SUCCEEDED" and not self.goal_reached

    def to_dict(self) -> dict:
        return {"seed": self.task.seed, "instruction": self.task.instruction,
                "goal": self.task.goal.to_dict(), "success": self.success, "reason": self.reason,
                "stage": self.stage, "status": self.status, "attempts": self.attempts,
                "goal_reached": self.goal_reached, "false_success": self.false_success,
                "plan": self.plan_text, "wall_s": round(self.wall_s, 3),
                "sim_s": round(self.sim_s, 3), "physics_steps": self.physics_steps,
                "execution": self.execution, "history": list(self.history), "recording": self.recording}


JUDGE_SETTLE_S = 0.5
"""Physics time after the plan's last motion before the goal predicate is judged."""


def _candidates(planner, rgb, instruction: str):
    """The planner's plans for this frame, best first: ``candidates()`` when it has it."""
    if hasattr(planner, "candidates"):
        yield from planner.candidates(rgb, instruction)
    else:
        yield planner.plan(rgb, instruction)


def _mark(recorder: EpisodeRecorder, text: str, caption: str) -> None:
    """Draw the plan ``text`` on the frames that follow (a text that does not parse is not drawn)."""
    from ivl_embodied.plan.schema import PlanParseError, parse_plan

    try:
        recorder.mark_plan(parse_plan(text), caption)
    except PlanParseError:
        pass


def run_episode(task: Task, planner, record_dir=None, settle_s: float = JUDGE_SETTLE_S, max_attempts: int = 1,
                config: ExecutorConfig | None = None, robot_factory=SimRobot, arm=None) -> EpisodeResult:
    """Build the scene, then up to ``max_attempts`` times: plan from a fresh frame, take the first
    candidate plan whose boxes pass the scene check (no motion otherwise), execute it and verify the
    goal from a fresh frame. A refused instruction or a plan refused before moving ends the episode;
    a motion that did not reach the goal is retried. Finally the simulator's predicate judges. ``arm``: the
    robot (:func:`~ivl_embodied.sim.world.sim_arm`), ours by default."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
    t0 = time.perf_counter()
    world = SimWorld(scene_for(task)) if arm is None else SimWorld(scene_for(task), arm)
    recorder = EpisodeRecorder(record_dir, f"episode_{task.seed:06d}") if record_dir else None
    robot = robot_factory(world, frame_callback=recorder.on_frame if recorder else None)
    try:
        robot.hold(SETTLE_S)  # let objects settle on the table
        if hasattr(planner, "reset"):
            planner.reset(task, world)
        executor = Executor(robot, config=config)  # trajectory limits from the arm's description
        history: list[dict] = []
        report, plan_text, status, executed = None, "", "FAILED", 0
        for attempt in range(1, max_attempts + 1):
            obs = robot.get_observation()
            checked, report = [], None
            try:
                for k, text in enumerate(_candidates(planner, obs.rgb, task.instruction)):
                    plan_text = text
                    if recorder is not None:
                        _mark(recorder, text, f"attempt {attempt}, candidate {k + 1}: {task.instruction}")
                    report = executor.execute(text, obs)  # a refusal (parse .. scene check) returns before moving
                    checked.append({"plan": text, "refused": None if report.moved else report.reason})
                    if report.moved:
                        break
            except InstructionRefused as e:
                history.append({"attempt": attempt, "stage": "refused", "reason": e.refusal.message,
                                "refusal": e.refusal.reason})
                report, status = None, "REJECTED"
                break
            except Exception as e:  # a planner bug must not abort the whole evaluation
                log.exception("planner failed on seed %d", task.seed)
                plan_text, report = f"<planner error: {type(e).__name__}: {e}>", None
            if report is None:  # the planner failed or offered nothing: refused where it stops (parse)
                report = executor.execute(plan_text, obs)
                checked.append({"plan": plan_text, "refused": report.reason})
            if not report.moved:  # no candidate passed before moving
                history.append({"attempt": attempt, "stage": report.stage, "reason": report.reason,
                                "candidates": checked})
                status = "FAILED" if executed else "REJECTED"  # after a motion, a refusal ends the task as failed
                break
            executed += 1
            history.append({"attempt": attempt, "stage": report.stage, "reason": report.reason,
                            "candidates": checked, "plan": plan_text})
            if report.ok:
                status = "SUCCEEDED"
                break
            status = "FAILED"
        robot.hold(settle_s)
        ok, why = success(world, task.goal)
        last = history[-1]
        if status == "SUCCEEDED":
            reason, stage = ("" if ok else f"goal not reached: {why}"), ("done" if ok else "predicate")
        else:
            reason, stage = last["reason"], last["stage"]
        result = EpisodeResult(task, bool(ok and status == "SUCCEEDED"), reason, stage, plan_text,
                               time.perf_counter() - t0, world.time, robot.physics_steps,
                               report.to_dict() if report is not None else {}, None, status, executed, bool(ok),
                               tuple(history))
        if recorder is not None:
            rec = recorder.save(result.to_dict())
            result = EpisodeResult(**{**result.__dict__, "recording": rec})
        return result
    finally:
        world.close()
