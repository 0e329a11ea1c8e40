"""Joint trajectories and their spline maths, in one place.

A ``trajectory_msgs/JointTrajectory`` is interpolated the way ros2_control's
``joint_trajectory_controller`` does it: a cubic Hermite spline through the points, each
segment defined by the positions and velocities at its two ends. Everything that needs that
spline (the simulated controller sampling it, the skills timing their waypoints, the limit
check before anything is sent) uses the functions here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


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

    @classmethod
    def through(cls, joint_names, positions: np.ndarray, times: np.ndarray) -> JointTrajectory:
        """Waypoints ``positions`` [N, J] at ``times`` [N], velocities from :func:`spline_velocities`."""
        vel = spline_velocities(positions, times)
        return cls(tuple(joint_names), tuple(
            JointTrajectoryPoint(tuple(map(float, q)), tuple(map(float, v)), float(t))
            for q, v, t in zip(positions, vel, times, strict=True)))

    @property
    def duration(self) -> float:
        return self.points[-1].time_from_start

    def in_order(self, joint_names) -> JointTrajectory:
        """The same trajectory with its joints in ``joint_names``' order (a controller takes them in any order);
        ``ValueError`` names the joints that differ."""
        joint_names = tuple(joint_names)
        if tuple(self.joint_names) == joint_names:
            return self
        if sorted(self.joint_names) != sorted(joint_names):
            raise ValueError(f"trajectory joints {tuple(self.joint_names)} are not the arm's {joint_names}: "
                             f"unknown {sorted(set(self.joint_names) - set(joint_names))}, "
                             f"missing {sorted(set(joint_names) - set(self.joint_names))}")
        idx = [self.joint_names.index(j) for j in joint_names]
        return JointTrajectory(joint_names, tuple(
            JointTrajectoryPoint(tuple(p.positions[i] for i in idx), tuple(p.velocities[i] for i in idx),
                                 p.time_from_start) for p in self.points))

    @functools.cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions [N, J], velocities [N, J], times [N] (built once: the controller samples every step)."""
        pts = self.points
        return (np.array([p.positions for p in pts], float), np.array([p.velocities for p in pts], float),
                np.array([p.time_from_start for p in pts], float))

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at time ``t`` (the spline between points, held after the end)."""
        q, v, times = self.arrays
        if t <= times[0]:
            return q[0], np.zeros(q.shape[1])
        if t >= times[-1]:
            return q[-1], np.zeros(q.shape[1])
        i = int(np.searchsorted(times, t)) - 1
        h = times[i + 1] - times[i]
        bp, bv, _ = _basis((t - times[i]) / h)
        ends = (q[i], v[i] * h, q[i + 1], v[i + 1] * h)  # p0, m0, p1, m1
        return (sum(b * e for b, e in zip(bp, ends, strict=True)),
                sum(b * e for b, e in zip(bv, ends, strict=True)) / h)


def _basis(s):
    """Cubic Hermite basis at fraction ``s`` of a segment (scalar or array), for (p0, m0, p1, m1): the
    weights of the position, of its derivative in s, and of its second derivative in s."""
    pos = (2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2)
    vel = (6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s)
    acc = (12 * s - 6, 6 * s - 4, -12 * s + 6, 6 * s - 2)
    return pos, vel, acc


def hermite(q: np.ndarray, v: np.ndarray, t: np.ndarray, s: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position, velocity and acceleration of the cubic Hermite spline through points ``q`` [N, J]
    with velocities ``v`` [N, J] at times ``t`` [N], at the fractions ``s`` [S] of every segment:
    three arrays [S, N-1, J]."""
    s = np.asarray(s, float)[:, None, None]  # [S, 1, 1]
    h = np.diff(t)[None, :, None]  # [1, N-1, 1]
    p0, p1 = q[None, :-1], q[None, 1:]  # [1, N-1, J]
    m0, m1 = v[None, :-1] * h, v[None, 1:] * h
    ends = (p0, m0, p1, m1)
    bp, bv, ba = _basis(s)
    pos = sum(b * e for b, e in zip(bp, ends, strict=True))
    vel = sum(b * e for b, e in zip(bv, ends, strict=True)) / h
    acc = sum(b * e for b, e in zip(ba, ends, strict=True)) / h**2
    return pos, vel, acc


def spline_velocities(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Velocities at waypoints ``q`` [N, J]: central differences, zero at both ends."""
    v = np.zeros_like(q, dtype=float)
    if len(q) > 2:
        v[1:-1] = (q[2:] - q[:-2]) / (t[2:] - t[:-2])[:, None]
    return v


def time_parameterize(qs: np.ndarray, min_dt: np.ndarray, vmax: float, amax: float) -> np.ndarray:
    """Times for joint waypoints ``qs`` [N, J] so that speed and acceleration of the spline through
    them (velocities from :func:`spline_velocities`) stay within ``vmax`` and ``amax``."""
    dq = np.abs(np.diff(qs, axis=0)).max(axis=1)  # [N-1]
    dts = np.maximum(min_dt, 1.5 * dq / vmax)
    for _ in range(40):
        t = np.concatenate([[0.0], np.cumsum(dts)])
        # the acceleration of a cubic segment is linear in s: its extremes are at s = 0 and 1
        _, vel, acc = hermite(qs, spline_velocities(qs, t), t, np.array([0.0, 1.0]))  # [2, N-1, J]
        acc_peak = np.abs(acc).max(axis=(0, 2))  # [N-1]
        vel_peak = np.abs(vel).max(axis=(0, 2))
        bad = (acc_peak > amax) | (vel_peak > vmax)
        if not bad.any():
            break
        dts[bad] *= np.maximum(np.sqrt(acc_peak[bad] / amax), vel_peak[bad] / vmax).clip(1.02, 2.0)
    return np.concatenate([[0.0], np.cumsum(dts)])


@dataclass(frozen=True)
class TrajectoryLimits:
    """What a trajectory may ask of the arm: joint position range, speed and acceleration."""

    joint_lower: tuple[float, ...] | None = None  # rad; None = not checked
    joint_upper: tuple[float, ...] | None = None
    max_joint_speed: float = 1.5  # rad/s
    max_joint_accel: float = 8.0  # rad/s^2
    samples_per_segment: int = 9  # odd, so the mid-segment peak is sampled

    def __post_init__(self) -> None:
        for name in ("max_joint_speed", "max_joint_accel"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if (self.joint_lower is None) != (self.joint_upper is None):
            raise ValueError("give both joint_lower and joint_upper, or neither")
        if self.joint_lower is not None:
            if len(self.joint_lower) != len(self.joint_upper) or any(
                    lo >= hi for lo, hi in zip(self.joint_lower, self.joint_upper, strict=False)):
                raise ValueError(f"bad joint limits {self.joint_lower!r} / {self.joint_upper!r}")
        if self.samples_per_segment < 2:
            raise ValueError(f"samples_per_segment must be >= 2, got {self.samples_per_segment!r}")


def trajectory_violations(traj, limits: TrajectoryLimits) -> list[str]:
    """Why ``traj`` (anything shaped like ``trajectory_msgs/JointTrajectory``, times in seconds)
    breaks ``limits``: joint positions out of range, or speed/acceleration along the spline above
    the limits. Empty when it is within them."""
    pts = traj.points
    names = list(traj.joint_names)
    q = np.array([p.positions for p in pts], dtype=float)  # [N, J]
    v = np.array([p.velocities for p in pts], dtype=float)  # [N, J]
    t = np.array([p.time_from_start for p in pts], dtype=float)  # [N]
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v)) and np.all(np.isfinite(t))):
        return ["trajectory has non-finite values"]
    reasons = []
    if limits.joint_lower is not None:
        lo, hi = np.array(limits.joint_lower), np.array(limits.joint_upper)
        if q.shape[1] != len(lo):
            return [f"trajectory has {q.shape[1]} joints, limits have {len(lo)}"]
        i, j = np.nonzero((q < lo) | (q > hi))
        if len(i):
            reasons.append(f"{names[j[0]]} = {q[i[0], j[0]]:.3f} rad at point {i[0]} "
                           f"outside [{lo[j[0]]}, {hi[j[0]]}]")
    if len(pts) > 1:
        if np.any(np.diff(t) <= 0):
            return reasons + [f"time_from_start not increasing: {t.tolist()}"]
        _, vel, acc = hermite(q, v, t, np.linspace(0.0, 1.0, limits.samples_per_segment))
        for what, arr, lim, unit in (("speed", vel, limits.max_joint_speed, "rad/s"),
                                     ("acceleration", acc, limits.max_joint_accel, "rad/s^2")):
            peak = np.abs(arr).max(axis=(0, 1))  # [J]
            j = int(np.argmax(peak))
            if peak[j] > lim * (1 + 1e-6):
                reasons.append(f"{names[j]} {what} {peak[j]:.2f} {unit} exceeds limit {lim}")
    return reasons
