"""The executor's safety gate: nothing reaches the robot unless it passes here. ROS-free.

Checks, each giving a reason that names the offending value:

* e-stop: a latch; once engaged every check fails until :meth:`SafetyGate.reset_estop` is called.
  With a ``latch_file`` the latch survives the process: engaging writes the file, resetting removes
  it, and a gate made while the file exists starts engaged (a restarted executor is still stopped);
* action whitelist: plan steps whose action is not allowed;
* staleness: a plan made from sensor data older than ``max_data_age_s``;
* workspace bounds: grounded targets (base frame, metres) outside the allowed box.

What a trajectory may ask of the arm (joint range, speed, acceleration) is the arm's business:
:mod:`ivl_embodied.robot.trajectory` checks it, and the executor refuses a trajectory when either
that check or the e-stop here says no.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivl_embodied.plan.schema import ACTIONS, Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SafetyLimits:
    allowed_actions: tuple[str, ...] = ACTIONS
    workspace_min: tuple[float, float, float] = (0.2, -0.45, -0.02)  # m, base frame
    workspace_max: tuple[float, float, float] = (0.8, 0.45, 0.45)
    max_data_age_s: float = 2.0

    def __post_init__(self) -> None:
        bad = [a for a in self.allowed_actions if a not in ACTIONS]
        if bad:
            raise ValueError(f"allowed_actions {bad} are not plan actions {ACTIONS}")
        if len(self.workspace_min) != 3 or len(self.workspace_max) != 3:
            raise ValueError(f"workspace bounds need 3 values, got {self.workspace_min!r}, {self.workspace_max!r}")
        for i, (lo, hi) in enumerate(zip(self.workspace_min, self.workspace_max, strict=False)):
            if not lo < hi:
                raise ValueError(f"workspace axis {'xyz'[i]}: min {lo!r} must be < max {hi!r}")
        if not (np.isfinite(self.max_data_age_s) and self.max_data_age_s > 0):
            raise ValueError(f"max_data_age_s must be > 0, got {self.max_data_age_s!r}")


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
    def __init__(self, limits: SafetyLimits | None = None, latch_file: str | Path | None = None):
        self.limits = limits or SafetyLimits()
        self._lock = threading.Lock()
        self._estop_reason: str | None = None
        self.latch_file = Path(latch_file) if latch_file else None
        if self.latch_file is not None and self.latch_file.exists():
            try:
                saved = self.latch_file.read_text(encoding="utf-8").strip() or "no reason recorded"
            except OSError as e:  # unreadable: still latched (the file's presence is the latch)
                saved = f"latch file unreadable: {e}"
            self._estop_reason = f"{saved}; latched before this process started ({self.latch_file})"
            log.warning("e-stop still latched from before: %s", self._estop_reason)

    # -- e-stop latch -------------------------------------------------------------------
    def engage_estop(self, reason: str = "e-stop pressed", persist: bool = True) -> None:
        """Latch the e-stop; ``persist`` (with a latch file) keeps it latched across restarts."""
        with self._lock:
            if self._estop_reason is None:
                log.warning("e-stop engaged: %s", reason)
                self._estop_reason = reason
            if persist and self.latch_file is not None:
                self.latch_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.latch_file.with_suffix(".tmp")
                tmp.write_text(f"{reason} (at {time.strftime('%Y-%m-%d %H:%M:%S %Z')})\n", encoding="utf-8")
                os.replace(tmp, self.latch_file)

    def reset_estop(self) -> None:
        with self._lock:
            self._estop_reason = None
            if self.latch_file is not None:
                self.latch_file.unlink(missing_ok=True)

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    def estop_reasons(self) -> list[str]:
        """``["e-stop latched (why)"]`` while the latch holds, else empty."""
        r = self._estop_reason
        return [f"e-stop latched ({r})"] if r is not None else []

    # -- checks -------------------------------------------------------------------------
    def check_plan(self, plan: Plan, data_stamp: float, now: float) -> Verdict:
        """Whitelist every step's action and refuse plans made from stale data."""
        reasons = self.estop_reasons()
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
        reasons = self.estop_reasons()
        p = np.asarray(position, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            return _verdict(reasons + [f"{name}: position {p.tolist()} is not a finite 3-vector"])
        lo, hi = self.limits.workspace_min, self.limits.workspace_max
        for i, ax in enumerate("xyz"):
            if not lo[i] <= p[i] <= hi[i]:
                reasons.append(f"{name}: {ax} = {p[i]:.3f} m outside workspace [{lo[i]}, {hi[i]}]")
        return _verdict(reasons)
