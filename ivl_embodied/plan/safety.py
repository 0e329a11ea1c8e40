"""The executor's safety gate: nothing reaches the robot unless it passes here. ROS-free.

Checks, each giving a reason that names the offending value:

* e-stop: a latch; once engaged every check fails until :meth:`SafetyGate.reset_estop` is called;
* action whitelist: plan steps whose action is not allowed;
* staleness: a plan made from sensor data older than ``max_data_age_s``;
* workspace bounds: grounded targets (base frame, metres) outside the allowed box;
* trajectories: joint positions outside limits, and joint speed/acceleration of the cubic-Hermite
  spline through the points (the way a ``joint_trajectory_controller`` interpolates them) above limits.

Trajectories are duck-typed (``joint_names``; ``points`` with ``positions``, ``velocities``,
``time_from_start`` in seconds), i.e. the shape of ``trajectory_msgs/JointTrajectory``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from ivl_embodied.plan.schema import ACTIONS, Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SafetyLimits:
    allowed_actions: tuple[str, ...] = ACTIONS
    workspace_min: tuple[float, float, float] = (0.2, -0.45, -0.02)  # m, base frame
    workspace_max: tuple[float, float, float] = (0.8, 0.45, 0.45)
    max_joint_speed: float = 1.5  # rad/s
    max_joint_accel: float = 8.0  # rad/s^2
    joint_lower: tuple[float, ...] | None = None  # rad; None = not checked
    joint_upper: tuple[float, ...] | None = None
    max_data_age_s: float = 2.0
    samples_per_segment: int = 9  # odd, so the mid-segment peak is sampled

    def __post_init__(self) -> None:
        bad = [a for a in self.allowed_actions if a not in ACTIONS]
        if bad:
            raise ValueError(f"allowed_actions {bad} are not plan actions {ACTIONS}")
        if len(self.workspace_min) != 3 or len(self.workspace_max) != 3:
            raise ValueError(f"workspace bounds need 3 values, got {self.workspace_min!r}, {self.workspace_max!r}")
        for i, (lo, hi) in enumerate(zip(self.workspace_min, self.workspace_max, strict=False)):
            if not lo < hi:
                raise ValueError(f"workspace axis {'xyz'[i]}: min {lo!r} must be < max {hi!r}")
        for name in ("max_joint_speed", "max_joint_accel", "max_data_age_s"):
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


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "ok" if self.ok else "; ".join(self.reasons)


def _verdict(reasons: list[str]) -> Verdict:
    return Verdict(not reasons, tuple(reasons))


class SafetyGate:
    def __init__(self, limits: SafetyLimits | None = None):
        self.limits = limits or SafetyLimits()
        self._lock = threading.Lock()
        self._estop_reason: str | None = None

    # -- e-stop latch -------------------------------------------------------------------
    def engage_estop(self, reason: str = "e-stop pressed") -> None:
        with self._lock:
            if self._estop_reason is None:
                log.warning("e-stop engaged: %s", reason)
                self._estop_reason = reason

    def reset_estop(self) -> None:
        with self._lock:
            self._estop_reason = None

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    def _estop(self) -> list[str]:
        r = self._estop_reason
        return [f"e-stop latched ({r})"] if r is not None else []

    # -- checks -------------------------------------------------------------------------
    def check_plan(self, plan: Plan, data_stamp: float, now: float) -> Verdict:
        """Whitelist every step's action and refuse plans made from stale data."""
        reasons = self._estop()
        for i, step in enumerate(plan.steps):
            if step.action not in self.limits.allowed_actions:
                reasons.append(f"step {i}: action {step.action!r} not in whitelist {self.limits.allowed_actions}")
        age = now - data_stamp
        if not np.isfinite(age) or age > self.limits.max_data_age_s:
            reasons.append(f"plan data is {age:.2f} s old (max {self.limits.max_data_age_s} s)")
        elif age < -0.5:
            reasons.append(f"plan data stamp {data_stamp:.2f} is {-age:.2f} s in the future")
        return _verdict(reasons)

    def check_target(self, name: str, position) -> Verdict:
        """A grounded target position (base frame) must lie inside the workspace box."""
        reasons = self._estop()
        p = np.asarray(position, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            return _verdict(reasons + [f"{name}: position {p.tolist()} is not a finite 3-vector"])
        lo, hi = self.limits.workspace_min, self.limits.workspace_max
        for i, ax in enumerate("xyz"):
            if not lo[i] <= p[i] <= hi[i]:
                reasons.append(f"{name}: {ax} = {p[i]:.3f} m outside workspace [{lo[i]}, {hi[i]}]")
        return _verdict(reasons)

    def check_trajectory(self, traj) -> Verdict:
        """Joint limits, and speed/acceleration along the interpolated spline."""
        L = self.limits
        reasons = self._estop()
        pts = traj.points
        names = list(traj.joint_names)
        q = np.array([p.positions for p in pts], dtype=float)  # [N, J]
        v = np.array([p.velocities for p in pts], dtype=float)  # [N, J]
        t = np.array([p.time_from_start for p in pts], dtype=float)  # [N]
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v)) and np.all(np.isfinite(t))):
            return _verdict(reasons + ["trajectory has non-finite values"])
        if L.joint_lower is not None:
            lo, hi = np.array(L.joint_lower), np.array(L.joint_upper)
            if q.shape[1] != len(lo):
                return _verdict(reasons + [f"trajectory has {q.shape[1]} joints, limits have {len(lo)}"])
            i, j = np.nonzero((q < lo) | (q > hi))
            if len(i):
                reasons.append(f"{names[j[0]]} = {q[i[0], j[0]]:.3f} rad at point {i[0]} outside [{lo[j[0]]}, {hi[j[0]]}]")
        if len(pts) > 1:
            if np.any(np.diff(t) <= 0):
                return _verdict(reasons + [f"time_from_start not increasing: {t.tolist()}"])
            s = np.linspace(0.0, 1.0, L.samples_per_segment)[:, None, None]  # [S, 1, 1]
            h = np.diff(t)[None, :, None]  # [1, N-1, 1]
            p0, p1 = q[None, :-1], q[None, 1:]  # [1, N-1, J]
            m0, m1 = v[None, :-1] * h, v[None, 1:] * h
            vel = ((6 * s**2 - 6 * s) * p0 + (3 * s**2 - 4 * s + 1) * m0
                   + (-6 * s**2 + 6 * s) * p1 + (3 * s**2 - 2 * s) * m1) / h  # [S, N-1, J]
            acc = ((12 * s - 6) * p0 + (6 * s - 4) * m0 + (-12 * s + 6) * p1 + (6 * s - 2) * m1) / h**2
            for what, arr, lim, unit in (("speed", vel, L.max_joint_speed, "rad/s"),
                                         ("acceleration", acc, L.max_joint_accel, "rad/s^2")):
                peak = np.abs(arr).max(axis=(0, 1))  # [J]
                j = int(np.argmax(peak))
                if peak[j] > lim * (1 + 1e-6):
                    reasons.append(f"{names[j]} {what} {peak[j]:.2f} {unit} exceeds limit {lim}")
        return _verdict(reasons)
