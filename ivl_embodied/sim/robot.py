"""The seam between skills and a robot, mirroring ros2_control's interfaces as plain dataclasses.

``JointTrajectory``/``JointTrajectoryPoint`` have the shape of ``trajectory_msgs/JointTrajectory``
(``time_from_start`` in seconds), ``GripperCommand`` that of ``control_msgs/GripperCommand``,
``JointState`` that of ``sensor_msgs/JointState``. A :class:`Robot` is anything that gives an
:class:`Observation` and accepts those commands: the MuJoCo sim implements it
(:class:`~ivl_embodied.sim.sim_robot.SimRobot`); a ROS-topic robot implements the same methods.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ivl_embodied.plan.grounding import CameraInfo


@dataclass(frozen=True)
class JointTrajectoryPoint:
    positions: tuple[float, ...]
    velocities: tuple[float, ...]
    time_from_start: float  # s

    def __post_init__(self) -> None:
        if len(self.positions) != len(self.velocities):
            raise ValueError(f"{len(self.positions)} positions but {len(self.velocities)} velocities")
        if not np.all(np.isfinite(self.positions)) or not np.all(np.isfinite(self.velocities)):
            raise ValueError(f"non-finite trajectory point {self.positions!r} {self.velocities!r}")
        if not (np.isfinite(self.time_from_start) and self.time_from_start >= 0):
            raise ValueError(f"time_from_start must be finite and >= 0, got {self.time_from_start!r}")


@dataclass(frozen=True)
class JointTrajectory:
    joint_names: tuple[str, ...]
    points: tuple[JointTrajectoryPoint, ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a trajectory needs at least one point")
        n = len(self.joint_names)
        times = [p.time_from_start for p in self.points]
        for i, p in enumerate(self.points):
            if len(p.positions) != n:
                raise ValueError(f"point {i} has {len(p.positions)} positions for {n} joints")
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"time_from_start must increase strictly, got {times}")

    @property
    def duration(self) -> float:
        return self.points[-1].time_from_start

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at time ``t`` (cubic Hermite between points, held after the end)."""
        pts = self.points
        if t <= pts[0].time_from_start:
            return np.array(pts[0].positions), np.zeros(len(self.joint_names))
        if t >= pts[-1].time_from_start:
            return np.array(pts[-1].positions), np.zeros(len(self.joint_names))
        i = int(np.searchsorted([p.time_from_start for p in pts], t)) - 1
        a, b = pts[i], pts[i + 1]
        h = b.time_from_start - a.time_from_start
        s = (t - a.time_from_start) / h
        p0, p1 = np.array(a.positions), np.array(b.positions)
        m0, m1 = np.array(a.velocities) * h, np.array(b.velocities) * h
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        pos = h00 * p0 + h10 * m0 + h01 * p1 + h11 * m1
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        vel = (d00 * p0 + d10 * m0 + d01 * p1 + d11 * m1) / h
        return pos, vel


@dataclass(frozen=True)
class GripperCommand:
    position: float  # target opening between the pads, m
    max_effort: float = 25.0  # N

    def __post_init__(self) -> None:
        if not (np.isfinite(self.position) and self.position >= 0):
            raise ValueError(f"gripper position must be >= 0 m, got {self.position!r}")
        if not (np.isfinite(self.max_effort) and self.max_effort > 0):
            raise ValueError(f"gripper max_effort must be > 0 N, got {self.max_effort!r}")


@dataclass(frozen=True)
class JointState:
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray


@dataclass(frozen=True)
class Observation:
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres, 0 = no return
    camera_info: CameraInfo
    joint_state: JointState
    gripper_opening: float  # m
    stamp: float  # s, robot clock


@dataclass(frozen=True)
class MotionResult:
    """Outcome of a trajectory or gripper command (like FollowJointTrajectory's result)."""

    ok: bool
    reason: str = ""
    error: float = 0.0  # final tracking error (rad) or gripper opening (m)


class Robot(abc.ABC):
    """What skills need from a robot. Every call returns in bounded time."""

    arm_joint_names: tuple[str, ...]

    @abc.abstractmethod
    def get_observation(self, with_images: bool = True) -> Observation: ...

    @abc.abstractmethod
    def send_trajectory(self, traj: JointTrajectory) -> MotionResult: ...

    @abc.abstractmethod
    def send_gripper(self, cmd: GripperCommand) -> MotionResult: ...

    @abc.abstractmethod
    def now(self) -> float: ...
