"""A :class:`~ivl_embodied.robot.interface.Robot` over ROS topics: the executor's view of any arm.

Sensor callbacks (run on the node's spinning thread) store the latest joint state, camera
frames (RGB + depth paired by stamp, a short bounded history), camera info and the camera's
static transform. Commands are published as ``trajectory_msgs/JointTrajectory`` and a
``Float64MultiArray`` gripper command; the blocking ``send_*`` calls (made from the
executor's worker thread) wait on the robot's own clock — the stamps of its joint states —
with a wall-clock bound, so a dead robot ends a skill with a reason instead of a hang.
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from ivl_embodied.robot.arm import ArmDescription
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
from ivl_embodied.transport.convert import (
    MessageError,
    gripper_to_msg,
    msg_to_camera_info,
    msg_to_image,
    ns_to_s,
    stamp_to_ns,
    trajectory_to_msg,
    transform_to_matrix,
)

LOG = logging.getLogger(__name__)


def calibration_transform(path) -> tuple[str, str, np.ndarray]:
    """(parent, child, 4x4 pose of child in parent) from a fixed camera's calibration file (YAML:
    ``parent``, ``child``, ``translation: [x, y, z]`` in m, ``rotation: [x, y, z, w]``); raises ValueError
    naming the file and what is wrong."""
    from pathlib import Path

    import yaml

    from ivl_embodied.transport import msg_type

    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
        if not isinstance(cfg, dict) or set(cfg) != {"parent", "child", "translation", "rotation"}:
            raise ValueError(f"it needs exactly parent, child, translation, rotation; got {cfg!r:.200}")
        (tx, ty, tz), (qx, qy, qz, qw) = cfg["translation"], cfg["rotation"]
        T = msg_type("geometry_msgs/msg/Transform")
        tf = T(translation=msg_type("geometry_msgs/msg/Vector3")(x=float(tx), y=float(ty), z=float(tz)),
               rotation=msg_type("geometry_msgs/msg/Quaternion")(x=float(qx), y=float(qy), z=float(qz), w=float(qw)))
        return str(cfg["parent"]), str(cfg["child"]), transform_to_matrix(tf)
    except (OSError, ValueError, TypeError, MessageError, yaml.YAMLError) as e:
        raise ValueError(f"camera calibration {path}: {e}") from None


class RobotUnavailable(RuntimeError):
    """A piece of robot state has not arrived; the message names the topic."""


@dataclass(frozen=True)
class TopicRobotConfig:
    arm: ArmDescription
    finger_joints: tuple[str, ...] = ("finger_left_joint", "finger_right_joint")
    base_frame: str = "base_link"
    goal_tolerance: float = GOAL_TOLERANCE_RAD  # rad at the end of a trajectory
    settle_s: float = TRAJECTORY_SETTLE_S  # robot time allowed after a trajectory's end
    gripper_timeout_s: float = 0.8  # robot time
    wall_timeout_factor: float = 4.0  # wall-clock bound = factor x robot-time budget + 5 s
    # RGB-D frames kept, by stamp: every frame of the last frame_history_s seconds (robot time), at most
    # max_frames. A plan names the frame it was made from; one older than the executor's max_plan_age_s
    # is refused anyway, so the span follows that (a frame count ran out under load: issue 18).
    frame_history_s: float = 12.0
    max_frames: int = 300
    commands: bool = True  # False (a dry run): no trajectory or gripper publisher exists, every motion is refused
    topics: tuple[tuple[str, str], ...] = (
        ("rgb", "camera/color/image_raw"), ("depth", "camera/depth/image_raw"),
        ("camera_info", "camera/color/camera_info"), ("joint_states", "joint_states"),
        ("tf_static", "/tf_static"), ("tf", "/tf"), ("trajectory", "arm_controller/joint_trajectory"),
        ("gripper", "gripper_controller/commands"),
    )

    def __post_init__(self) -> None:
        for name in ("goal_tolerance", "settle_s", "gripper_timeout_s", "wall_timeout_factor", "frame_history_s",
                     "max_frames"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def topic(self, key: str) -> str:
        return dict(self.topics)[key]


DRY_RUN = "dry run: this robot interface sends no commands"
TF_KEPT = 2000  # /tf samples kept per frame, at most (besides frame_history_s)
TF_GAP_NS = 1_000_000_000  # a moving frame's nearest pose serves up to this far outside its samples


def _interpolate(a: np.ndarray, b: np.ndarray, f: float) -> np.ndarray:
    """The pose ``f`` (0..1) of the way from ``a`` to ``b``: position linearly, rotation along the shortest arc."""
    import mujoco

    qa, qb, vel, q = np.zeros(4), np.zeros(4), np.zeros(3), np.zeros(4)
    mujoco.mju_mat2Quat(qa, np.ascontiguousarray(a[:3, :3]).flatten())
    mujoco.mju_mat2Quat(qb, np.ascontiguousarray(b[:3, :3]).flatten())
    mujoco.mju_subQuat(vel, qb, qa)  # the rotation from a to b, as a rotation vector in a's frame
    q[:] = qa
    mujoco.mju_quatIntegrate(q, vel, f)
    out = np.eye(4)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, q)
    out[:3, :3] = rot.reshape(3, 3)
    out[:3, 3] = (1 - f) * a[:3, 3] + f * b[:3, 3]
    return out
TIME_JUMP_NS = 1_000_000_000  # joint states this much older than the last: the robot's clock went back


class TopicRobot(Robot):
    """The robot behind its topics; with ``actions`` (:class:`~ivl_embodied.nodes.controller_actions.
    ControllerClients`), trajectories and gripper commands go as ros2_control's action goals instead, and a motion
    counts only when the controller's result says so too."""

    def __init__(self, node, config: TopicRobotConfig, actions=None):
        from ivl_embodied.transport import QosProfile

        self.node = node
        self.cfg = config
        self.arm = config.arm
        self.actions = actions
        self._cv = threading.Condition()
        self._joints: dict[str, tuple[float, float]] = {}
        self._robot_ns: int | None = None
        self._rgb: collections.OrderedDict[int, object] = collections.OrderedDict()
        self._depth: collections.OrderedDict[int, object] = collections.OrderedDict()
        self._received: dict[tuple[bool, int], float] = {}  # (rgb?, stamp) -> when that frame arrived (monotonic)
        self._info = None
        self._tf_parent: dict[str, tuple[str, np.ndarray]] = {}  # child frame -> (parent frame, pose in it)
        # frames that move (/tf): child frame -> (parent frame, {stamp ns: pose in it}, in stamp order)
        self._tf_moving: dict[str, tuple[str, collections.OrderedDict]] = {}
        self._halt_lock = threading.Lock()  # a halt and a motion command never interleave
        self._halted: str | None = None
        c = config.topic
        self.pub_traj = self.pub_grip = None
        if config.commands:
            self.pub_traj = node.create_publisher("trajectory_msgs/msg/JointTrajectory", c("trajectory"))
            self.pub_grip = node.create_publisher("std_msgs/msg/Float64MultiArray", c("gripper"))
        node.create_subscription("sensor_msgs/msg/Image", c("rgb"), self._on_rgb, "sensor_data")
        node.create_subscription("sensor_msgs/msg/Image", c("depth"), self._on_depth, "sensor_data")
        node.create_subscription("sensor_msgs/msg/CameraInfo", c("camera_info"), self._on_info, "sensor_data")
        node.create_subscription("sensor_msgs/msg/JointState", c("joint_states"), self._on_joints)
        node.create_subscription("tf2_msgs/msg/TFMessage", c("tf_static"), self._on_tf,
                                 QosProfile("reliable", 1, "transient_local"))
        node.create_subscription("tf2_msgs/msg/TFMessage", c("tf"), lambda m: self._on_tf(m, c("tf")),
                                 QosProfile("reliable", 100, "volatile"))

    # -- callbacks (spinning thread) -----------------------------------------------------
    def _keep(self, store: collections.OrderedDict, msg) -> None:
        with self._cv:
            stamp = stamp_to_ns(msg.header.stamp)
            span = int(self.cfg.frame_history_s * 1e9)
            if store and stamp + span < next(reversed(store)):
                self._forget_frames(f"a frame stamped {ns_to_s(stamp):.3f} s", stamp + span)
            store[stamp] = msg
            self._received[(store is self._rgb, stamp)] = time.monotonic()
            oldest_kept = next(reversed(store)) - span
            while len(store) > self.cfg.max_frames or next(iter(store)) < oldest_kept:
                gone, _ = store.popitem(last=False)
                self._received.pop((store is self._rgb, gone), None)
            self._cv.notify_all()

    def _forget_frames(self, what: str, after_ns: int) -> None:
        """The robot's time went back (a simulator restarted, a bag looped): frames stamped in the old
        timeline would be taken for frames of the new one ("the first frame newer than now", or the frame of
        a plan's stamp when the new camera's frame of that stamp has not arrived). Forgets the frames stamped
        after ``after_ns``, and every frame that arrived before the last of those (the old timeline's, whatever
        its stamp); frames of the new timeline stay (a new simulator's camera can be heard before its joint
        states are). Under _cv."""
        frames = [(store, s, self._received.get((store is self._rgb, s), 0.0))
                  for store in (self._rgb, self._depth) for s in store]
        last_old = max((rx for _, s, rx in frames if s > after_ns), default=None)
        old = [(store, s) for store, s, rx in frames if s > after_ns or (last_old is not None and rx < last_old)]
        if old:
            LOG.warning("robot time jumped back (%s, after %s): forgetting %d kept frames", what,
                        f"{ns_to_s(max(s for _, s in old)):.3f} s", len(old))
        for store, s in old:
            del store[s]
            self._received.pop((store is self._rgb, s), None)

    def _on_rgb(self, msg) -> None:
        self._keep(self._rgb, msg)

    def _on_depth(self, msg) -> None:
        self._keep(self._depth, msg)

    # Every callback is a boundary: a message that cannot be used is logged and dropped (the last good
    # state is kept), never raised into the spinning thread.
    def _on_info(self, msg) -> None:
        try:
            msg_to_camera_info(msg, np.eye(4))  # the intrinsics must make sense on their own
        except MessageError as e:
            LOG.error("dropped camera info on %s: %s", self.cfg.topic("camera_info"), e)
            return
        with self._cv:
            self._info = msg

    def _on_tf(self, msg, topic: str | None = None) -> None:
        """Transforms from ``/tf_static`` (``topic`` None: each frame's pose in its parent's) or ``/tf`` (each
        frame's poses by stamp, for as long as frames are kept)."""
        for t in msg.transforms:
            try:
                m = transform_to_matrix(t.transform)
            except MessageError as e:
                LOG.error("dropped transform %s -> %s on %s: %s", t.header.frame_id, t.child_frame_id,
                          topic or self.cfg.topic("tf_static"), e)
                continue
            with self._cv:
                if topic is None:
                    self._tf_parent[t.child_frame_id] = (t.header.frame_id, m)
                    continue
                parent, poses = self._tf_moving.get(t.child_frame_id, (None, None))
                if parent != t.header.frame_id:  # new, or moved under another parent: its history restarts
                    poses = collections.OrderedDict()
                    self._tf_moving[t.child_frame_id] = (t.header.frame_id, poses)
                stamp = stamp_to_ns(t.header.stamp)
                before = next(reversed(poses)) if poses else None
                poses[stamp] = m
                if before is not None and stamp < before:  # an out-of-order sample: keep them in stamp order
                    for s in sorted(poses):
                        poses.move_to_end(s)
                newest = next(reversed(poses))
                while len(poses) > TF_KEPT or next(iter(poses)) < newest - int(self.cfg.frame_history_s * 1e9):
                    poses.popitem(last=False)

    def add_transform(self, parent: str, child: str, matrix: np.ndarray) -> None:
        """A transform known without a topic (a fixed camera's calibration file)."""
        with self._cv:
            self._tf_parent[child] = (parent, np.asarray(matrix, float))

    def base_to(self, frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """The pose of ``frame`` in the base frame, composed along the transform tree heard so far (a camera
        driver's camera_link -> optical frame, under a calibration's base_link -> camera_link, ...). A frame that
        moves (``/tf``) is taken at ``stamp_ns`` (interpolated between the poses around it; default: its newest)."""
        with self._cv:
            m, at, seen = np.eye(4), frame, []
            while at != self.cfg.base_frame:
                if at in self._tf_moving and at not in seen:
                    seen.append(at)
                    parent, poses = self._tf_moving[at]
                    m = self._pose_at(at, poses, stamp_ns) @ m
                    at = parent
                    continue
                if at not in self._tf_parent or at in seen:
                    chain = " -> ".join([*reversed(seen), at]) if seen else at
                    raise RobotUnavailable(
                        f"no transform {self.cfg.base_frame} -> {frame!r}: {chain!r} has no parent on "
                        f"{self.cfg.topic('tf_static')} or {self.cfg.topic('tf')}" if at not in seen
                        else f"the transforms to {frame!r} form a loop ({chain})")
                seen.append(at)
                parent, t = self._tf_parent[at]
                m = t @ m
                at = parent
            return m

    def _pose_at(self, frame: str, poses: collections.OrderedDict, stamp_ns: int | None) -> np.ndarray:
        """``frame``'s pose at ``stamp_ns`` from its /tf samples: interpolated between the two around it (position
        linearly, rotation along the shortest arc); the nearest one within TF_GAP_NS outside them. Under _cv."""
        stamps = list(poses)
        if stamp_ns is None or stamp_ns >= stamps[-1]:
            nearest = stamps[-1]
        elif stamp_ns <= stamps[0]:
            nearest = stamps[0]
        else:
            i = bisect.bisect_right(stamps, stamp_ns)
            a, b = stamps[i - 1], stamps[i]
            return _interpolate(poses[a], poses[b], (stamp_ns - a) / (b - a))
        if stamp_ns is not None and abs(stamp_ns - nearest) > TF_GAP_NS:
            raise RobotUnavailable(
                f"no transform of {frame!r} at {ns_to_s(stamp_ns):.3f} s on {self.cfg.topic('tf')}: its poses span "
                f"{ns_to_s(stamps[0]):.3f}..{ns_to_s(stamps[-1]):.3f} s")
        return poses[nearest]

    def _on_joints(self, msg) -> None:
        pos, vel = np.asarray(msg.position, float), np.asarray(msg.velocity, float)
        if len(pos) != len(msg.name) or len(vel) not in (0, len(msg.name)) or not (
                np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))):
            LOG.error("dropped joint state on %s: %d names, positions %s, velocities %s (all must be finite, "
                      "one per name)", self.cfg.topic("joint_states"), len(msg.name), pos.tolist(), vel.tolist())
            return
        with self._cv:
            vel = vel if len(vel) else np.zeros(len(pos))
            for name, q, v in zip(msg.name, pos, vel, strict=True):
                self._joints[name] = (float(q), float(v))
            stamp = stamp_to_ns(msg.header.stamp)
            if self._robot_ns is not None and stamp < self._robot_ns - TIME_JUMP_NS:
                self._forget_frames(f"joint states stamped {ns_to_s(stamp):.3f} s", stamp + TIME_JUMP_NS)
            self._robot_ns = stamp
            self._cv.notify_all()

    # -- state ------------------------------------------------------------------------------
    def now(self) -> float:
        with self._cv:
            if self._robot_ns is None:
                raise RobotUnavailable(f"no joint states on {self.cfg.topic('joint_states')}")
            return ns_to_s(self._robot_ns)

    def _arm(self) -> tuple[np.ndarray, np.ndarray]:
        missing = [j for j in self.arm_joint_names if j not in self._joints]
        if missing:
            raise RobotUnavailable(f"joint states on {self.cfg.topic('joint_states')} lack {missing}")
        q = np.array([self._joints[j][0] for j in self.arm_joint_names])
        v = np.array([self._joints[j][1] for j in self.arm_joint_names])
        return q, v

    def _gripper_positions(self, opening: float) -> list[float]:
        """What the gripper's controller takes for ``opening`` m: each finger's travel, or the linkage's joint."""
        return [self.arm.gripper_position(opening)] * len(self.cfg.finger_joints)

    def _opening(self) -> float:
        return self.arm.opening([self._joints.get(j, (0.0, 0.0))[0] for j in self.cfg.finger_joints])

    def frame_stamps(self) -> list[int]:
        with self._cv:
            return [s for s in self._depth if s in self._rgb]

    def get_observation(self, with_images: bool = True, stamp_ns: int | None = None) -> Observation:
        """Joint state plus, with images, the RGB-D frame stamped ``stamp_ns`` (default: newest)."""
        with self._cv:
            q, v = self._arm()
            now = ns_to_s(self._robot_ns or 0)
            if not with_images:  # joint state only: what skills read between motions
                return Observation(np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32), None,
                                   JointState(self.arm_joint_names, q, v), self._opening(), now)
            paired = [s for s in self._depth if s in self._rgb]
            if not paired:
                raise RobotUnavailable(f"no RGB-D frame pair on {self.cfg.topic('rgb')} + {self.cfg.topic('depth')}")
            stamp = paired[-1] if stamp_ns is None else stamp_ns
            if stamp not in self._depth or stamp not in self._rgb:
                raise RobotUnavailable(
                    f"no RGB-D frame stamped {ns_to_s(stamp):.3f} s (have {ns_to_s(paired[0]):.3f}.."
                    f"{ns_to_s(paired[-1]):.3f} s)")
            rgb_msg, depth_msg = self._rgb[stamp], self._depth[stamp]
            info = self._camera_info(stamp)  # where the camera was when it took the frame
            joints = JointState(self.arm_joint_names, q, v)
            opening = self._opening()
        try:
            rgb, depth = msg_to_image(rgb_msg), msg_to_image(depth_msg)
        except MessageError as e:
            raise RobotUnavailable(f"unusable camera frame: {e}") from None
        if depth.ndim != 2 or depth.shape != rgb.shape[:2]:
            raise RobotUnavailable(f"depth {depth.shape} does not match rgb {rgb.shape[:2]}")
        return Observation(rgb, depth, info, joints, opening, ns_to_s(stamp))

    def fresh_observation(self, timeout_s: float = 3.0) -> Observation:
        """The first RGB-D frame stamped after the robot's current time (waits up to ``timeout_s``)."""
        with self._cv:
            start = self._robot_ns or 0
            # newer than now, and not from after the robot's latest time (a frame of an older timeline)
            newer = lambda: [s for s in self._depth if s in self._rgb  # noqa: E731
                             and start < s <= (self._robot_ns or 0) + TIME_JUMP_NS]
            if not self._cv.wait_for(lambda: bool(newer()), timeout=timeout_s):
                raise RobotUnavailable(f"no RGB-D frame newer than {ns_to_s(start):.3f} s within {timeout_s} s")
            stamp = newer()[0]
        return self.get_observation(stamp_ns=stamp)

    def _camera_info(self, stamp_ns: int | None = None):
        if self._info is None:
            raise RobotUnavailable(f"no camera info on {self.cfg.topic('camera_info')}")
        return msg_to_camera_info(self._info, self.base_to(self._info.header.frame_id, stamp_ns))

    # -- commands (worker thread) --------------------------------------------------------------
    def _wait(self, done, robot_budget_s: float, what: str) -> str | None:
        """Wait until ``done(robot_time)`` or the robot-time budget runs out; None when done."""
        t_start = self.now()
        wall_deadline = time.monotonic() + self.cfg.wall_timeout_factor * robot_budget_s + 5.0
        with self._cv:
            while True:
                if self._halted:
                    return f"{what}: halted ({self._halted})"
                t = ns_to_s(self._robot_ns or 0)
                if done(t - t_start):
                    return None
                if t - t_start > robot_budget_s:
                    return f"{what}: not done after {robot_budget_s:.1f} s of robot time"
                if time.monotonic() > wall_deadline:
                    waited = wall_deadline - time.monotonic() + robot_budget_s
                    return f"{what}: no joint-state progress for {waited:.0f} s"
                self._cv.wait(timeout=0.1)

    # -- halting -------------------------------------------------------------------------
    def hold(self) -> bool:
        """Command the arm to hold where it is now (a one-point trajectory of zero velocity);
        False when there is no joint state to hold (then nothing we commanded is moving)."""
        from ivl_embodied.robot.interface import JointTrajectoryPoint

        if self.pub_traj is None:
            return False  # a dry run commanded nothing
        if self.actions is not None and self.actions.trajectory is not None:
            self.actions.cancel()  # the controller holds when its goal is cancelled; the topic's hold below too
        with self._cv:
            try:
                q, _ = self._arm()
            except RobotUnavailable as e:
                LOG.warning("cannot command hold: %s", e)
                return False
        hold = JointTrajectory(self.arm_joint_names, (JointTrajectoryPoint(tuple(q), (0.0,) * len(q), 0.0),))
        self.pub_traj.publish(trajectory_to_msg(hold))
        return True

    def halt(self, reason: str) -> None:
        """Hold the arm where it is and refuse every motion command until :meth:`resume`. When this
        returns, the hold is sent and no other trajectory or gripper command will be."""
        with self._halt_lock:
            self._halted = reason
            self.hold()
        with self._cv:
            self._cv.notify_all()  # a motion being waited for ends now

    def resume(self) -> None:
        with self._halt_lock:
            self._halted = None

    @property
    def halted(self) -> str | None:
        return self._halted

    def send_trajectory(self, traj: JointTrajectory) -> MotionResult:
        if tuple(traj.joint_names) != self.arm_joint_names:
            return MotionResult(False, f"trajectory joints {traj.joint_names} != {self.arm_joint_names}")
        goal = np.array(traj.points[-1].positions)
        if self.pub_traj is None:
            return MotionResult(False, DRY_RUN)
        if self.actions is not None and self.actions.trajectory is not None:
            return self._follow(traj, goal)
        with self._halt_lock:
            if self._halted:
                return MotionResult(False, f"halted: {self._halted}")
            self.pub_traj.publish(trajectory_to_msg(traj))
        err = [float("inf")]

        def reached(elapsed: float) -> bool:
            q, v = self._arm()
            err[0] = float(np.abs(q - goal).max())
            return elapsed >= traj.duration and err[0] < self.cfg.goal_tolerance / 3 and np.abs(v).max() < 0.05

        why = self._wait(reached, traj.duration + self.cfg.settle_s, "trajectory")
        if why is None or err[0] <= self.cfg.goal_tolerance:
            return MotionResult(True, "", err[0])
        return MotionResult(False, f"goal not reached: joint error {err[0]:.3f} rad > "
                                   f"{self.cfg.goal_tolerance} ({why})", err[0])

    def _wall_budget(self, robot_s: float) -> float:
        return self.cfg.wall_timeout_factor * robot_s + 5.0

    def _follow(self, traj: JointTrajectory, goal: np.ndarray) -> MotionResult:
        """The trajectory as a FollowJointTrajectory goal: done when the controller's result says SUCCESSFUL and
        the joint states agree."""
        why = self.actions.follow(trajectory_to_msg(traj), self._wall_budget(traj.duration + self.cfg.settle_s),
                                  lambda: self._halted, self._halt_lock)
        with self._cv:
            q, _ = self._arm()
        err = float(np.abs(q - goal).max())
        if why:
            return MotionResult(False, f"goal not reached: {why}", err)
        if err > self.cfg.goal_tolerance:  # the controller says done; the joint states must agree
            return MotionResult(False, f"goal not reached: joint error {err:.3f} rad > {self.cfg.goal_tolerance} "
                                       f"in {self.cfg.topic('joint_states')} though the controller reported success",
                                err)
        return MotionResult(True, "", err)

    def send_gripper(self, cmd: GripperCommand) -> MotionResult:
        if self.pub_grip is None:
            return MotionResult(False, DRY_RUN)
        if self.actions is not None and self.actions.gripper is not None:
            why = self.actions.grip(self.arm.gripper_position(cmd.position), cmd.max_effort,
                                    self._wall_budget(self.cfg.gripper_timeout_s * 3), lambda: self._halted,
                                    self._halt_lock)
            if why:
                return MotionResult(False, f"gripper: {why}", self._opening())
            with self._cv:
                return MotionResult(True, "", self._opening())
        with self._halt_lock:
            if self._halted:
                return MotionResult(False, f"halted: {self._halted}")
            self.pub_grip.publish(gripper_to_msg(self._gripper_positions(cmd.position)))
        last = [self._opening(), 0]

        def still(elapsed: float) -> bool:
            o = self._opening()
            last[1] = last[1] + 1 if abs(o - last[0]) < 2e-4 else 0
            last[0] = o
            return elapsed > 0.1 and last[1] >= 3

        self._wait(still, self.cfg.gripper_timeout_s, "gripper")
        return MotionResult(True, "", self._opening())
