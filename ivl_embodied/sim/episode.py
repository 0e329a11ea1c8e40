"""One episode: build the task's scene, ask the planner, execute the plan, judge success."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ivl_embodied.robot.executor import Executor
from ivl_embodied.sim.recording import EpisodeRecorder
from ivl_embodied.sim.sim_robot import SimRobot
from ivl_embodied.sim.tasks import Task, scene_for, success
from ivl_embodied.sim.world import SETTLE_S, SimWorld

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeResult:
    task: Task
    success: bool
    reason: str  # why it failed (execution or predicate); "" on success
    stage: str
    plan_text: str
    wall_s: float
    sim_s: float
    physics_steps: int
    execution: dict
    recording: dict | None = None

    def to_dict(self) -> dict:
        return {"seed": self.task.seed, "instruction": self.task.instruction,
                "goal": self.task.goal.to_dict(), "success": self.success, "reason": self.reason,
                "stage": self.stage, "plan": self.plan_text, "wall_s": round(self.wall_s, 3),
                "sim_s": round(self.sim_s, 3), "physics_steps": self.physics_steps,
                "execution": self.execution, "recording": self.recording}


JUDGE_SETTLE_S = 0.5
"""Physics time after the plan's last motion before the goal predicate is judged."""


def run_episode(task: Task, planner, record_dir=None, settle_s: float = JUDGE_SETTLE_S) -> EpisodeResult:
    t0 = time.perf_counter()
    world = SimWorld(scene_for(task))
    recorder = EpisodeRecorder(record_dir, f"episode_{task.seed:06d}") if record_dir else None
    robot = SimRobot(world, frame_callback=recorder.on_frame if recorder else None)
    try:
        robot.hold(SETTLE_S)  # let objects settle on the table
        if hasattr(planner, "reset"):
            planner.reset(task, world)
        obs = robot.get_observation()
        try:
            plan_text = planner.plan(obs.rgb, task.instruction)
        except Exception as e:  # a planner bug must not abort the whole evaluation
            log.exception("planner failed on seed %d", task.seed)
            plan_text = f"<planner error: {type(e).__name__}: {e}>"
        executor = Executor(robot)  # trajectory limits from the arm's description
        report = executor.execute(plan_text, obs)
        robot.hold(settle_s)
        ok, why = success(world, task.goal)
        if report.ok:
            reason, stage = ("" if ok else f"goal not reached: {why}"), ("done" if ok else "predicate")
        else:
            reason, stage = report.reason, report.stage
        result = EpisodeResult(task, bool(ok and report.ok), reason, stage, plan_text,
                               time.perf_counter() - t0, world.time, robot.physics_steps, report.to_dict())
        if recorder is not None:
            rec = recorder.save(result.to_dict())
            result = EpisodeResult(**{**result.__dict__, "recording": rec})
        return result
    finally:
        world.close()
