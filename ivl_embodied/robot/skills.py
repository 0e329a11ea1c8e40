"""Pick, place and push as IK-planned joint trajectories sent through the :class:`Robot` seam.

Skills see the world only through grounded targets (:class:`~ivl_embodied.perception.grounding.GroundedObject`)
and the robot's observations; they never read simulator state. Every failure (IK, a trajectory the
safety check refuses, a motion that does not reach its goal, a missed grasp) raises
:class:`SkillFailure` with a reason that names the value; nothing loops without a bound.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ivl_embodied.perception.grounding import GroundedObject
from ivl_embodied.robot.interface import GripperCommand, JointTrajectory, Robot
from ivl_embodied.robot.kinematics import ArmKinematics, IKError
from ivl_embodied.robot.trajectory import time_parameterize

log = logging.getLogger(__name__)


class SkillFailure(RuntimeError):
    """A skill could not be completed; ``str(e)`` is the reason."""


@dataclass(frozen=True)
class SkillConfig:
    approach_height: float = 0.10  # m above the grasp/release point
    lift_height: float = 0.14  # m to lift a grasped object
    linear_speed: float = 0.10  # m/s for straight-line moves
    push_speed: float = 0.05  # m/s while pushing
    waypoint_step: float = 0.01  # m between IK waypoints of straight-line moves
    max_joint_speed: float = 1.0  # rad/s used for planning (below the safety limit)
    max_joint_accel: float = 3.0  # rad/s^2 used for planning
    open_width: float = 0.08  # m (at most the arm's own max_opening)
    min_grasp_opening: float = 0.012  # m; fingers closing further means nothing was grasped
    release_clearance: float = 0.012  # m between a held object's bottom and the target's top
    push_tip_height: float = 0.008  # m fingertips above the support while pushing
    push_standoff: float = 0.025  # m between fingers and object before the push

    def __post_init__(self) -> None:
        for k, v in self.__dict__.items():
            if not (isinstance(v, float) and math.isfinite(v) and v > 0):
                raise ValueError(f"SkillConfig.{k} must be a positive float, got {v!r}")


@dataclass(frozen=True)
class Held:
    """What the gripper holds: its height and where the TCP grips it (above its bottom)."""

    phrase: str
    height: float
    grasp_offset: float


class Skills:
    def __init__(self, robot: Robot, kinematics: ArmKinematics | None = None,
                 config: SkillConfig | None = None,
                 check_trajectory: Callable[[JointTrajectory], str | None] | None = None,
                 check_gripper: Callable[[], str | None] | None = None):
        self.robot = robot
        self.kin = kinematics or ArmKinematics(robot.arm)
        self.cfg = config or SkillConfig()
        self.open_width = min(self.cfg.open_width, robot.arm.max_opening)  # m: what this gripper opens to
        self.check_trajectory = check_trajectory  # why a trajectory may not be sent, or None
        self.check_gripper = check_gripper  # why the gripper may not be commanded now, or None

    # -- motion primitives --------------------------------------------------------------
    def _q(self) -> np.ndarray:
        return np.asarray(self.robot.get_observation(with_images=False).joint_state.position, float)

    def _send(self, qs: np.ndarray, times: np.ndarray, what: str) -> None:
        traj = JointTrajectory.through(self.robot.arm_joint_names, qs, times)
        if self.check_trajectory is not None:
            why = self.check_trajectory(traj)
            if why:
                raise SkillFailure(f"{what}: trajectory refused by safety gate: {why}")
        res = self.robot.send_trajectory(traj)
        if not res.ok:
            raise SkillFailure(f"{what}: {res.reason}")

    def move_joints(self, q_goal, what: str) -> None:
        q0 = self._q()
        q_goal = np.asarray(q_goal, float)
        dq = float(np.abs(q_goal - q0).max())
        if dq < 1e-4:
            return
        c = self.cfg
        # rest-to-rest cubic: peak speed 1.5 dq/T, peak acceleration 6 dq/T^2
        t = max(1.5 * dq / c.max_joint_speed, math.sqrt(6 * dq / c.max_joint_accel), 0.3)
        self._send(np.stack([q0, q_goal]), np.array([0.0, t]), what)

    def _ik(self, pos, yaw, q_init, what: str, lean=None) -> np.ndarray:
        try:
            return self.kin.solve(pos, yaw, q_init, lean)
        except IKError as e:
            raise SkillFailure(f"{what}: IK failed: {e}") from None

    def move_to(self, pos, yaw: float, what: str, lean=None) -> None:
        self.move_joints(self._ik(pos, yaw, self._q(), what, lean), what)

    def move_linear(self, pos, yaw: float, speed: float, what: str, lean=None) -> None:
        """Straight TCP line from the current pose to ``pos`` (IK every ``waypoint_step``)."""
        q = self._q()
        p0, _ = self.kin.fk(q)
        p1 = np.asarray(pos, float)
        n = max(2, int(math.ceil(np.linalg.norm(p1 - p0) / self.cfg.waypoint_step)) + 1)
        qs = [q]
        for s in np.linspace(0, 1, n)[1:]:
            qs.append(self._ik(p0 + s * (p1 - p0), yaw, qs[-1], what, lean))
        qs = np.stack(qs)
        if np.abs(np.diff(qs, axis=0)).max() > 0.5:
            raise SkillFailure(f"{what}: IK branch flip along the straight line to {np.round(p1, 3).tolist()}")
        step_dt = np.full(n - 1, np.linalg.norm(p1 - p0) / (n - 1) / speed)
        times = time_parameterize(qs, step_dt, self.cfg.max_joint_speed, self.cfg.max_joint_accel)
        self._send(qs, times, what)

    def gripper(self, width: float) -> float:
        if self.check_gripper is not None:
            why = self.check_gripper()
            if why:
                raise SkillFailure(f"gripper to {width:.3f} m refused by safety gate: {why}")
        return self.robot.send_gripper(GripperCommand(position=width)).error

    def home(self) -> None:
        self.move_joints(np.array(self.robot.arm.home), "return home")

    # -- skills -------------------------------------------------------------------------
    def pick(self, phrase: str, obj: GroundedObject) -> Held:
        c = self.cfg
        what = f"pick {phrase!r}"
        if obj.flat:
            raise SkillFailure(f"{what}: nothing graspable stands in its box (flat region)")
        if max(obj.extent[0], obj.extent[1]) > self.open_width + 0.01:
            raise SkillFailure(f"{what}: object {obj.extent[:2].round(3).tolist()} m wider than the gripper "
                               f"opening {self.open_width} m")
        h = obj.height
        grasp_offset = max(min(0.5 * h, h - 0.012), self.robot.arm.tip_below_tcp + 0.004)
        x, y = obj.position[:2]
        yaw = math.atan2(y, x)  # fingers close across the reach direction
        grasp = np.array([x, y, obj.support_z + grasp_offset])
        self.gripper(self.open_width)
        self.move_to(grasp + [0, 0, c.approach_height], yaw, what + " (approach)")
        self.move_linear(grasp, yaw, c.linear_speed, what + " (descend)")
        opening = self.gripper(0.0)
        if opening < c.min_grasp_opening:
            self.gripper(self.open_width)
            self.move_linear(grasp + [0, 0, c.approach_height], yaw, c.linear_speed, what + " (retreat)")
            raise SkillFailure(f"{what}: grasp missed (fingers closed to {opening * 1000:.1f} mm)")
        self.move_linear(grasp + [0, 0, c.lift_height], yaw, c.linear_speed, what + " (lift)")
        opening = self.robot.get_observation(with_images=False).gripper_opening
        if opening < c.min_grasp_opening:
            raise SkillFailure(f"{what}: object slipped out while lifting (opening {opening * 1000:.1f} mm)")
        return Held(phrase=phrase, height=h, grasp_offset=grasp_offset)

    def place(self, held: Held, target_phrase: str, target: GroundedObject) -> None:
        c = self.cfg
        what = f"place {held.phrase!r} on/in {target_phrase!r}"
        x, y = target.position[:2]
        yaw = math.atan2(y, x)
        release = np.array([x, y, target.top_z + c.release_clearance + held.grasp_offset])
        self.move_to(release + [0, 0, c.approach_height], yaw, what + " (approach)")
        self.move_linear(release, yaw, c.linear_speed * 0.6, what + " (descend)")
        self.gripper(self.open_width)
        self.move_linear(release + [0, 0, c.approach_height], yaw, c.linear_speed, what + " (retreat)")

    def push(self, phrase: str, obj: GroundedObject, region_phrase: str, region: GroundedObject) -> None:
        c = self.cfg
        what = f"push {phrase!r} to {region_phrase!r}"
        if obj.flat:
            raise SkillFailure(f"{what}: nothing stands in the object's box (flat region)")
        d = region.position[:2] - obj.position[:2]
        dist = float(np.linalg.norm(d))
        if dist < 1e-3:
            return
        u = d / dist
        radius = 0.5 * max(obj.extent[0], obj.extent[1])
        finger_half = 0.012  # closed fingers' half thickness along the push
        arm = self.robot.arm
        # the fingertips at push_tip_height; an arm whose hand is wide and close above its fingertips leans them
        # forward (arm.push_lean) so the hand stays behind the object's face
        lean = np.array([*u, 0.0]) * arm.push_lean if arm.push_lean else None
        tool_z = np.array([*(math.sin(arm.push_lean) * u), -math.cos(arm.push_lean)])
        tip_to_tcp = -tool_z * arm.tip_below_tcp
        z = obj.support_z + c.push_tip_height + tip_to_tcp[2]
        yaw = math.atan2(u[1], u[0]) + arm.push_yaw  # the tool's yaw to the push direction (the arm's choice)
        start = obj.position[:2] - u * (radius + finger_half + c.push_standoff) + tip_to_tcp[:2]
        end = region.position[:2] - u * (radius + finger_half) + tip_to_tcp[:2]
        self.gripper(0.0)
        self.move_to(np.array([*start, z + c.approach_height]), yaw, what + " (approach)", lean)
        self.move_linear(np.array([*start, z]), yaw, c.linear_speed, what + " (descend)", lean)
        self.move_linear(np.array([*end, z]), yaw, c.push_speed, what + " (push)", lean)
        back = end - u * 0.02
        self.move_linear(np.array([*back, z]), yaw, c.linear_speed, what + " (back off)", lean)
        self.move_linear(np.array([*back, z + c.approach_height]), yaw, c.linear_speed, what + " (retreat)", lean)
