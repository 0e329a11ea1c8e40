"""The seam between skills and a robot, mirroring ros2_control's interfaces as plain dataclasses.

``JointTrajectory``/``JointTrajectoryPoint`` have the shape of ``trajectory_msgs/JointTrajectory``
(``time_from_start`` in seconds), ``GripperCommand`` that of ``control_msgs/GripperCommand``,
``JointState`` that of ``sensor_msgs/JointState``. A :class:`Robot` is anything that gives an
:class:`Observation` and accepts those commands: the MuJoCo sim implements it
(``ivl_embodied.sim.sim_robot.SimRobot``); a ROS-topic robot implements the same methods.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ivl_embodied.perception.grounding import CameraInfo
from ivl_embodied.robot.arm import ArmDescription
from ivl_embodied.robot.trajectory import JointTrajectory, JointTrajectoryPoint

__all__ = ["GripperCommand", "JointState", "JointTrajectory", "JointTrajectoryPoint", "MotionResult",
           "Observation", "Robot", "GOAL_TOLERANCE_RAD", "TRAJECTORY_SETTLE_S"]

TRAJECTORY_SETTLE_S = 0.6
"""Robot time allowed after a trajectory's last point for the arm to settle on its goal."""
GOAL_TOLERANCE_RAD = 0.03
"""Largest joint error at the end of a trajectory that still counts as having reached its goal."""


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

    arm: ArmDescription

    @property
    def arm_joint_names(self) -> tuple[str, ...]:
        return self.arm.joint_names

    @abc.abstractmethod
    def get_observation(self, with_images: bool = True) -> Observation: ...

    @abc.abstractmethod
    def send_trajectory(self, traj: JointTrajectory) -> MotionResult: ...

    @abc.abstractmethod
    def send_gripper(self, cmd: GripperCommand) -> MotionResult: ...

    @abc.abstractmethod
    def now(self) -> float: ...

    def fresh_observation(self, timeout_s: float = 3.0) -> Observation:
        """An observation whose images were taken after this call began: the scene as it is now."""
        return self.get_observation(with_images=True)
