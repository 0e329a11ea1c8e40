"""The simulated ros2_control controllers: a joint trajectory controller and a gripper.

:class:`JointTrajectoryController` follows a trajectory the way ros2_control's
``joint_trajectory_controller`` does: the spline is sampled at every physics step and fed to
the arm's position actuators; after the last point it holds the goal. A new trajectory
replaces the active one. It is driven by whoever steps the physics: :class:`SimRobot`
(blocking, for episodes) or ``sim_node`` (in real time, from ROS topics).
"""

from __future__ import annotations

import numpy as np

from ivl_embodied.robot.interface import JointTrajectory
from ivl_embodied.sim.world import ARM_JOINTS, SimWorld

MAX_START_DEVIATION = 0.1  # rad: a trajectory must start near the current state


class JointTrajectoryController:
    def __init__(self, world: SimWorld, max_duration_s: float = 30.0):
        self.world = world
        self.max_duration_s = max_duration_s
        self.active: JointTrajectory | None = None
        self.t0 = 0.0
        self._dt = float(world.model.opt.timestep)

    def command(self, traj: JointTrajectory) -> str | None:
        """Start following ``traj``; returns why it was refused, or None."""
        if tuple(traj.joint_names) != ARM_JOINTS:
            return f"trajectory joints {tuple(traj.joint_names)} != {ARM_JOINTS}"
        if traj.duration > self.max_duration_s:
            return f"trajectory of {traj.duration:.1f} s exceeds {self.max_duration_s} s"
        dev = float(np.abs(np.array(traj.points[0].positions) - self.world.arm_q()).max())
        if dev > MAX_START_DEVIATION:
            return f"trajectory starts {dev:.2f} rad from the current state (max {MAX_START_DEVIATION})"
        self.active, self.t0 = traj, self.world.time
        return None

    @property
    def goal(self) -> np.ndarray | None:
        return None if self.active is None else np.array(self.active.points[-1].positions)

    def elapsed(self) -> float:
        return self.world.time - self.t0

    def update(self) -> None:
        """Set the arm's position targets for the next physics step."""
        if self.active is not None:
            q, _ = self.active.sample(self.elapsed() + self._dt)
            self.world.data.ctrl[: len(ARM_JOINTS)] = q

    def command_gripper(self, opening_m: float) -> None:
        """Drive both fingers towards a total opening of ``opening_m`` (0..0.08 m)."""
        if not np.isfinite(opening_m) or opening_m < 0:
            raise ValueError(f"gripper opening must be >= 0 m, got {opening_m!r}")
        self.world.data.ctrl[self.world.gripper_act] = float(np.clip(opening_m / 2.0, 0.0, 0.04))
