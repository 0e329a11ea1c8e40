"""The MuJoCo world behind the :class:`~ivl_embodied.robot.interface.Robot` seam.

Trajectories are followed the way a ros2_control ``joint_trajectory_controller`` follows them:
the spline is sampled every physics step and fed to the arm's position actuators; physics moves
everything else. Every command runs a bounded number of physics steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ivl_embodied.robot.interface import (
    GOAL_TOLERANCE_RAD,
    TRAJECTORY_SETTLE_S,
    GripperCommand,
    JointState,
    JointTrajectory,
    MotionResult,
    Observation,
    Robot,
)
from ivl_embodied.sim.controller import JointTrajectoryController
from ivl_embodied.sim.world import SimWorld

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimRobotConfig:
    max_trajectory_s: float = 30.0  # longer trajectories are refused
    settle_s: float = TRAJECTORY_SETTLE_S  # max time after the end to converge
    goal_tolerance: float = GOAL_TOLERANCE_RAD  # rad, max joint error at the end
    gripper_timeout_s: float = 0.8
    frame_period_s: float = 1 / 15  # frame callback period (recording)

    def __post_init__(self) -> None:
        for name in ("max_trajectory_s", "settle_s", "goal_tolerance", "gripper_timeout_s", "frame_period_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


class SimRobot(Robot):
    def __init__(self, world: SimWorld, config: SimRobotConfig | None = None,
                 frame_callback: Callable[[SimWorld], None] | None = None):
        self.world = world
        self.arm = world.arm
        self.cfg = config or SimRobotConfig()
        self.frame_callback = frame_callback
        self._dt = float(world.model.opt.timestep)
        self._next_frame = 0.0
        self.physics_steps = 0
        self.controller = JointTrajectoryController(world, self.cfg.max_trajectory_s)

    def now(self) -> float:
        return self.world.time

    def _step(self) -> None:
        self.world.step(1)
        self.physics_steps += 1
        if self.frame_callback is not None and self.world.time >= self._next_frame:
            self._next_frame = self.world.time + self.cfg.frame_period_s
            self.frame_callback(self.world)

    def get_observation(self, with_images: bool = True) -> Observation:
        w = self.world
        js = JointState(self.arm.joint_names, w.arm_q(), w.arm_qd())
        rgb = w.render_rgb() if with_images else np.zeros((0, 0, 3), np.uint8)
        depth = w.render_depth() if with_images else np.zeros((0, 0), np.float32)
        return Observation(rgb=rgb, depth=depth, camera_info=w.camera_info(), joint_state=js,
                           gripper_opening=w.gripper_opening(), stamp=w.time)

    def send_trajectory(self, traj: JointTrajectory) -> MotionResult:
        refused = self.controller.command(traj)
        if refused:
            return MotionResult(False, refused)
        w = self.world
        for _ in range(int(np.ceil(traj.duration / self._dt))):
            self.controller.update()
            self._step()
        goal = self.controller.goal
        self.controller.update()  # past the end: hold the goal
        err = float(np.abs(w.arm_q() - goal).max())
        for _ in range(int(self.cfg.settle_s / self._dt)):
            err = float(np.abs(w.arm_q() - goal).max())
            if err < self.cfg.goal_tolerance / 3 and np.abs(w.arm_qd()).max() < 0.05:
                break
            self._step()
        if err > self.cfg.goal_tolerance:
            return MotionResult(False, f"goal not reached: joint error {err:.3f} rad > {self.cfg.goal_tolerance}", err)
        return MotionResult(True, "", err)

    def send_gripper(self, cmd: GripperCommand) -> MotionResult:
        """Drive the fingers towards ``cmd.position``; done when they stop moving (or time out)."""
        w = self.world
        self.controller.command_gripper(cmd.position)
        still = 0
        for _ in range(int(self.cfg.gripper_timeout_s / self._dt)):
            self._step()
            v = abs(float(w.data.qvel[w.finger_dof_adr[0]]))
            still = still + 1 if v < 1e-3 else 0
            if still >= 25:
                break
        opening = w.gripper_opening()
        return MotionResult(True, "", opening)

    def hold(self, seconds: float) -> None:
        """Let physics run with the current commands (bounded)."""
        for _ in range(int(min(seconds, 5.0) / self._dt)):
            self._step()
