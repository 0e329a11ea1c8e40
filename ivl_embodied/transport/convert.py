"""Messages ↔ the library's plain types, for the nodes.

Pure functions over the generated message classes (:func:`ivl_embodied.transport.msg_type`),
so they run and are tested without any middleware. Every check names the bad value:
a node receiving a malformed message logs the error and drops that message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ivl_embodied.plan.schema import Plan, Step
from ivl_embodied.transport import msg_type

MAX_IMAGE_SIDE = 16384
"""Larger images are refused as absurd (a 16K x 16K rgb8 image is already 768 MB)."""

# encoding -> (numpy dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "32FC1": ("f4", 1),
    "16UC1": ("u2", 1),
}


class MessageError(ValueError):
    """A message whose content cannot be used; the text names the field and value."""


# -- time: every conversion between stamps, durations, nanoseconds and seconds lives here ------
NS_PER_S = 1_000_000_000


def s_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def ns_to_s(ns: int) -> float:
    return ns / NS_PER_S


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` or ``Duration`` -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Any:
    if ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {ns}")
    return msg_type("builtin_interfaces/msg/Time")(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def seconds_to_duration(seconds: float) -> Any:
    ns = s_to_ns(seconds)
    return msg_type("builtin_interfaces/msg/Duration")(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def header(stamp_ns: int, frame_id: str = "") -> Any:
    return msg_type("std_msgs/msg/Header")(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


# -- images ------------------------------------------------------------------------------


def image_to_msg(image: np.ndarray, stamp_ns: int, frame_id: str, encoding: str | None = None) -> Any:
    """``sensor_msgs/Image`` from an HxWx3 uint8 (rgb8), HxW float32 (32FC1) or HxW uint16 array."""
    arr = np.ascontiguousarray(image)
    if encoding is None:
        if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
            encoding = "rgb8"
        elif arr.dtype == np.float32 and arr.ndim == 2:
            encoding = "32FC1"
        elif arr.dtype == np.uint16 and arr.ndim == 2:
            encoding = "16UC1"
        else:
            raise MessageError(f"cannot infer an image encoding for dtype {arr.dtype} shape {arr.shape}")
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dt, ch = IMAGE_ENCODINGS[encoding]
    want_ndim = 3 if ch > 1 else 2
    if arr.ndim != want_ndim or (ch > 1 and arr.shape[2] != ch) or arr.dtype != np.dtype(dt):
        layout = f"HxWx{ch}" if ch > 1 else "HxW"
        raise MessageError(f"{encoding} needs {layout} {np.dtype(dt)}, "
                           f"got {arr.dtype} shape {arr.shape}")
    h, w = arr.shape[:2]
    le = arr.astype(np.dtype(dt).newbyteorder("<"), copy=False)
    return msg_type("sensor_msgs/msg/Image")(
        header=header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=0, step=w * ch * np.dtype(dt).itemsize, data=le.tobytes(),
    )


def msg_to_image(msg: Any) -> np.ndarray:
    """An ``sensor_msgs/Image`` as a numpy array: rgb8/bgr8/rgba8/bgra8/mono8 → HxWx3 uint8 RGB,
    32FC1 → HxW float32 metres, 16UC1 → HxW float32 metres (millimetres / 1000)."""
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise MessageError(f"unsupported image encoding {enc!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    h, w = int(msg.height), int(msg.width)
    if not (0 < h <= MAX_IMAGE_SIDE and 0 < w <= MAX_IMAGE_SIDE):
        raise MessageError(f"image size {w}x{h} outside 1..{MAX_IMAGE_SIDE} per side")
    dt, ch = IMAGE_ENCODINGS[enc]
    dtype = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    row = w * ch * dtype.itemsize
    step = int(msg.step)
    if step < row:
        raise MessageError(f"image step {step} smaller than width*channels*itemsize = {row} ({enc}, {w}x{h})")
    data = msg.data
    if len(data) != step * h:
        raise MessageError(f"image data has {len(data)} bytes, expected step {step} x height {h} = {step * h}")
    buf = np.frombuffer(data, dtype=np.uint8).reshape(h, step)[:, :row]  # [H, row bytes]
    arr = np.ascontiguousarray(buf).view(dtype).reshape(h, w, ch)  # [H, W, C]
    if enc in ("32FC1", "16UC1"):
        depth = arr[:, :, 0].astype(np.float32)
        if enc == "16UC1":
            depth /= 1000.0
        depth[~np.isfinite(depth)] = 0.0  # ROS depth convention: NaN/inf = no return
        return depth
    if enc == "mono8":
        return np.repeat(arr, 3, axis=2)
    if enc.startswith("bgr"):
        arr = arr[:, :, [2, 1, 0]]
    return np.ascontiguousarray(arr[:, :, :3])


# -- camera info ---------------------------------------------------------------------------


def camera_info_to_msg(info: Any, stamp_ns: int) -> Any:
    """``sensor_msgs/CameraInfo`` from :class:`ivl_embodied.perception.grounding.CameraInfo`."""
    k = np.asarray(info.k, dtype=float)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return msg_type("sensor_msgs/msg/CameraInfo")(
        header=header(stamp_ns, info.frame_id), height=info.height, width=info.width,
        distortion_model=info.distortion_model, d=[float(x) for x in info.d],
        k=[float(x) for x in k.ravel()], r=[float(x) for x in np.eye(3).ravel()],
        p=[float(x) for x in p.ravel()],
    )


def msg_to_camera_info(msg: Any, t_base_camera: np.ndarray) -> Any:
    """:class:`CameraInfo` from the message plus the camera pose in the base frame (from TF)."""
    from ivl_embodied.perception.grounding import CameraInfo

    try:
        return CameraInfo(
            width=int(msg.width), height=int(msg.height), k=np.asarray(msg.k, dtype=float).reshape(3, 3),
            t_base_camera=t_base_camera, frame_id=msg.header.frame_id,
            d=tuple(float(x) for x in msg.d), distortion_model=msg.distortion_model or "plumb_bob",
        )
    except ValueError as e:
        raise MessageError(f"bad camera_info: {e}") from None


def transform_to_matrix(tf: Any) -> np.ndarray:
    """4x4 matrix of a ``geometry_msgs/Transform``."""
    q = np.array([tf.rotation.w, tf.rotation.x, tf.rotation.y, tf.rotation.z], dtype=float)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise MessageError(f"transform rotation quaternion {q.tolist()} is not a rotation")
    t = np.array([tf.translation.x, tf.translation.y, tf.translation.z], dtype=float)
    if not np.all(np.isfinite(q)) or not np.all(np.isfinite(t)):
        raise MessageError(f"transform has non-finite values: rotation {q.tolist()}, translation {t.tolist()}")
    w, x, y, z = q / n
    m = np.eye(4)
    m[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    m[:3, 3] = t
    return m


def matrix_to_transform_stamped(m: np.ndarray, parent: str, child: str, stamp_ns: int) -> Any:
    """``geometry_msgs/TransformStamped`` of a 4x4 rigid transform (parent ← child)."""
    r = np.asarray(m, dtype=float)[:3, :3]
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0, r[1, 0] - r[0, 1])
    T = msg_type("geometry_msgs/msg/Transform")
    t = m[:3, 3]
    return msg_type("geometry_msgs/msg/TransformStamped")(
        header=header(stamp_ns, parent), child_frame_id=child,
        transform=T(translation=msg_type("geometry_msgs/msg/Vector3")(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                    rotation=msg_type("geometry_msgs/msg/Quaternion")(x=float(x), y=float(y), z=float(z), w=float(w))),
    )


# -- visual embeddings ---------------------------------------------------------------------


def payload_to_msg(payload: dict[str, Any], stamp_ns: int, frame_id: str) -> Any:
    """``VisualEmbedding`` from :meth:`VisualEmbeddings.to_payload`'s fields."""
    return msg_type("ivl_embodied_msgs/msg/VisualEmbedding")(header=header(stamp_ns, frame_id), **payload)


def msg_to_payload(msg: Any) -> dict[str, Any]:
    """The message's payload fields, for :meth:`VisualEmbeddings.from_payload` (which validates)."""
    from ivl_embodied.embeddings.payload import PAYLOAD_FIELDS

    out = {f: getattr(msg, f) for f in PAYLOAD_FIELDS}
    out["tokens_per_tile"] = list(out["tokens_per_tile"])
    return out


# -- joint trajectories, gripper, joint states -----------------------------------------------


def trajectory_to_msg(traj: Any, stamp_ns: int = 0) -> Any:
    """``trajectory_msgs/JointTrajectory`` from :class:`ivl_embodied.robot.interface.JointTrajectory`."""
    P = msg_type("trajectory_msgs/msg/JointTrajectoryPoint")
    return msg_type("trajectory_msgs/msg/JointTrajectory")(
        header=header(stamp_ns), joint_names=list(traj.joint_names),
        points=[P(positions=[float(x) for x in p.positions], velocities=[float(x) for x in p.velocities],
                  time_from_start=seconds_to_duration(p.time_from_start)) for p in traj.points],
    )


def msg_to_trajectory(msg: Any) -> Any:
    from ivl_embodied.robot.interface import JointTrajectory, JointTrajectoryPoint

    try:
        pts = []
        for p in msg.points:
            vel = tuple(p.velocities) if len(p.velocities) else (0.0,) * len(p.positions)
            t = ns_to_s(stamp_to_ns(p.time_from_start))
            pts.append(JointTrajectoryPoint(tuple(p.positions), vel, t))
        return JointTrajectory(tuple(msg.joint_names), tuple(pts))
    except ValueError as e:
        raise MessageError(f"bad joint trajectory: {e}") from None


def gripper_to_msg(positions) -> Any:
    """Gripper command for a ``forward_command_controller`` of the gripper's joints: ``data`` = one position per
    joint, in the controller's joint order (fingers in m, a linkage's driven joint in rad)."""
    return msg_type("std_msgs/msg/Float64MultiArray")(data=[float(p) for p in positions])


def msg_to_gripper(msg: Any, joints: int) -> list[float]:
    """The joint positions of a gripper command for a controller of ``joints`` joints."""
    data = [float(x) for x in msg.data]
    if len(data) != joints or not all(np.isfinite(data)):
        raise MessageError(f"gripper command must be data = {joints} finite joint position(s), got {data!r}")
    return data


def joint_state_to_msg(names: list[str], position: np.ndarray, velocity: np.ndarray, stamp_ns: int) -> Any:
    return msg_type("sensor_msgs/msg/JointState")(
        header=header(stamp_ns), name=list(names), position=[float(x) for x in position],
        velocity=[float(x) for x in velocity], effort=[],
    )


# -- plans (Plan <-> ivl_embodied_msgs/ActionPlan) ------------------------------------
# Absent values travel as empty fields: a step without ``box`` has an empty ``int16[] box``, a
# step without ``target`` has ``target == ""`` (and the reverse on the way back). Boxes keep
# InternVL's 0..1000 grounding frame.

ACTION_PLAN = "ivl_embodied_msgs/msg/ActionPlan"
PLAN_STEP = "ivl_embodied_msgs/msg/PlanStep"


def _stamp(stamp: Any) -> Any:
    Time = msg_type("builtin_interfaces/msg/Time")
    if stamp is None:
        return Time()
    if isinstance(stamp, Time):
        return stamp
    if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp >= 0:  # nanoseconds
        return ns_to_stamp(stamp)
    raise TypeError(f"stamp must be a builtin_interfaces/Time or int nanoseconds >= 0, got {stamp!r}")


def step_to_msg(step: Step, pose: Any = None) -> Any:
    """A ``PlanStep``; ``pose`` ([x, y, z] in the base frame, m), where the executor grounded the step."""
    msg = msg_type(PLAN_STEP)(
        action=step.action,
        object=step.object,
        target=step.target or "",
        box=list(step.box) if step.box is not None else [],
        target_box=list(step.target_box) if step.target_box is not None else [],
    )
    if pose is not None:
        x, y, z = (float(v) for v in pose)
        msg.has_pose = True
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
        msg.pose.orientation.w = 1.0
    return msg


def plan_to_msg(plan: Plan, task_id: str, instruction: str, raw_text: str, *,
                prefill_ms: float = 0.0, decode_ms: float = 0.0, generated_tokens: int = 0,
                stamp: Any = None, frame_id: str = "", embedding_stamp: Any = None, attempt: int = 1,
                candidate: int = 0, poses: list | None = None) -> Any:
    """An ``ActionPlan`` message for ``plan`` (timings in ms; stamps as Time or int ns); ``attempt`` and
    ``candidate`` say which ``TaskRequest`` it answers; ``poses`` (one [x, y, z] per step) fill the steps'
    grounded poses."""
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan, got {type(plan).__name__}")
    for name, v in (("prefill_ms", prefill_ms), ("decode_ms", decode_ms)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    if isinstance(generated_tokens, bool) or not isinstance(generated_tokens, int) or not 0 <= generated_tokens < 2**32:
        raise ValueError(f"generated_tokens must be an int in 0..2**32-1, got {generated_tokens!r}")
    for name, v in (("attempt", attempt), ("candidate", candidate)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 256:
            raise ValueError(f"{name} must be an int in 0..255, got {v!r}")
    if poses is not None and len(poses) != len(plan.steps):
        raise ValueError(f"poses: one per step ({len(plan.steps)}), got {len(poses)}")
    Header = msg_type("std_msgs/msg/Header")
    return msg_type(ACTION_PLAN)(
        header=Header(stamp=_stamp(stamp), frame_id=frame_id),
        task_id=task_id,
        instruction=instruction,
        steps=[step_to_msg(s, None if poses is None else poses[i]) for i, s in enumerate(plan.steps)],
        raw_text=raw_text,
        embedding_stamp=_stamp(embedding_stamp),
        prefill_ms=float(prefill_ms),
        decode_ms=float(decode_ms),
        generated_tokens=generated_tokens,
        attempt=attempt,
        candidate=candidate,
    )


def msg_to_step(msg: Any, index: int = 0) -> Step:
    def box(values: Any, what: str) -> tuple[int, ...] | None:
        values = list(values)
        if not values:
            return None
        if len(values) != 4:
            raise ValueError(f"step {index}: {what} must have 4 values or none, got {values!r}")
        return tuple(int(v) for v in values)

    try:
        return Step(
            action=msg.action,
            object=msg.object,
            box=box(msg.box, "box"),
            target=msg.target or None,
            target_box=box(msg.target_box, "target_box"),
        )
    except ValueError as exc:
        raise ValueError(f"ActionPlan step {index} is not a valid plan step: {exc}") from exc


def msg_to_plan(msg: Any) -> Plan:
    """The ``Plan`` of an ``ActionPlan`` message (raises ``ValueError`` naming the bad step)."""
    return Plan(tuple(msg_to_step(s, i) for i, s in enumerate(msg.steps)))
