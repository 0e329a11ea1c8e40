"""The simulated ros2_control controllers: a joint trajectory controller and a gripper.

:class:`JointTrajectoryController` follows a trajectory the way ros2_control's
``joint_trajectory_controller`` does: the spline is sampled at every physics step and fed to
the arm's position actuators; after the last point it holds the goal. A new trajectory
replaces the active one. It is driven by whoever steps the physics: :class:`SimRobot`
(blocking, for episodes) or ``sim_node`` (in real time, from ROS topics).

Like a ``ros2_control`` controller configured with joint limits, it enforces its own limits,
whoever sent the trajectory: joint range from the arm's description, speed and acceleration
(:data:`CONTROLLER_SPEED`, the hardware's, above the executor's own planning limits), and while
e-stopped (:meth:`JointTrajectoryController.estop`) it holds where it is and refuses every arm
and gripper command until :meth:`~JointTrajectoryController.release`.
"""

from __future__ import annotations

import numpy as np

from ivl_embodied.robot.interface import JointTrajectory, JointTrajectoryPoint
from ivl_embodied.robot.trajectory import TrajectoryLimits, trajectory_violations
from ivl_embodied.sim.world import SimWorld

MAX_START_DEVIATION = 0.1  # rad: a trajectory must start near the current state
CONTROLLER_SPEED = {"max_joint_speed": 2.0, "max_joint_accel": 12.0}
"""What the simulated arm's controller accepts (the executor plans within 1.5 rad/s, 8 rad/s^2), within the joint
range of the arm's description."""


class JointTrajectoryController:
    def __init__(self, world: SimWorld, max_duration_s: float = 30.0, limits: TrajectoryLimits | None = None):
        self.world = world
        self.joints = world.arm.joint_names
        self.max_duration_s = max_duration_s
        self.limits = limits or world.arm.trajectory_limits(**CONTROLLER_SPEED)
        self.active: JointTrajectory | None = None
        self.t0 = 0.0
        self.stopped: str | None = None  # why the controller is e-stopped, or None
        self._dt = float(world.model.opt.timestep)

    def hold(self) -> None:
        """Stop following the active trajectory: hold where the arm is now."""
        q = tuple(float(v) for v in self.world.arm_q())
        self.active = JointTrajectory(self.joints, (JointTrajectoryPoint(q, (0.0,) * len(q), 0.0),))
        self.t0 = self.world.time

    @property
    def moving(self) -> bool:
        """A trajectory is being followed (not yet at its last point)."""
        return self.active is not None and self.elapsed() < self.active.duration

    def estop(self, reason: str) -> None:
        """Hold where the arm is now and refuse every command until :meth:`release`."""
        self.hold()
        self.stopped = reason

    def release(self) -> None:
        self.stopped = None

    def command(self, traj: JointTrajectory) -> str | None:
        """Start following ``traj``; returns why it was refused, or None."""
        if self.stopped is not None:
            return f"e-stopped ({self.stopped})"
        try:
            traj = traj.in_order(self.joints)  # any order, as ros2_control's controller takes them
        except ValueError as e:
            return str(e)
        if traj.duration > self.max_duration_s:
            return f"trajectory of {traj.duration:.1f} s exceeds {self.max_duration_s} s"
        dev = float(np.abs(np.array(traj.points[0].positions) - self.world.arm_q()).max())
        if dev > MAX_START_DEVIATION:
            return f"trajectory starts {dev:.2f} rad from the current state (max {MAX_START_DEVIATION})"
        beyond = trajectory_violations(traj, self.limits)
        if beyond:
            return "beyond the controller's limits: " + "; ".join(beyond)
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
            self.world.data.ctrl[self.world.arm_ctrl] = q

    def command_gripper(self, opening_m: float) -> None:
        """Drive the fingers towards an opening of ``opening_m`` (0..the arm's max_opening)."""
        if self.stopped is not None:
            raise ValueError(f"e-stopped ({self.stopped})")
        if not np.isfinite(opening_m) or opening_m < 0:
            raise ValueError(f"gripper opening must be >= 0 m, got {opening_m!r}")
        self.world.data.ctrl[self.world.gripper_act] = self.world.arm.gripper_position(opening_m)
