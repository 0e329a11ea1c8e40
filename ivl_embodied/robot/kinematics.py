"""Inverse kinematics: damped least squares on MuJoCo Jacobians of the arm's own description.

Uses its own model of the arm alone (never the scene's data), so solving IK cannot move anything
in the world. Targets are tool-centre-point poses with the gripper pointing down and a yaw about
the vertical, which is what tabletop pick, place and push need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ivl_embodied.robot.arm import ArmDescription


@dataclass(frozen=True)
class IKConfig:
    max_iters: int = 200
    damping: float = 1e-3
    pos_tol: float = 0.001  # m
    rot_tol: float = 0.02  # rad
    max_step: float = 0.3  # rad per iteration

    def __post_init__(self) -> None:
        if self.max_iters < 1 or self.damping <= 0 or self.pos_tol <= 0 or self.rot_tol <= 0:
            raise ValueError(f"bad IKConfig {self!r}")


class IKError(RuntimeError):
    """No joint solution reaches the target; the message gives the residual."""


def down_rotation(yaw: float, lean: np.ndarray | None = None) -> np.ndarray:
    """Tool frame with z pointing down, rotated by ``yaw`` about the world z axis; with ``lean`` (a horizontal
    vector, its length the angle in rad) the tool's z leans that way, fingertips first (a push)."""
    c, s = math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    r = rz @ np.diag([1.0, -1.0, -1.0])
    if lean is None or not np.any(lean):
        return r
    lean = np.asarray(lean, float)
    angle = float(np.linalg.norm(lean))
    k = np.cross([0.0, 0.0, 1.0], lean / angle)  # horizontal axis across the lean; rotate about it by -angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    tilt = np.eye(3) + math.sin(-angle) * kx + (1 - math.cos(-angle)) * kx @ kx  # Rodrigues
    return tilt @ r


class ArmKinematics:
    def __init__(self, arm: ArmDescription, config: IKConfig | None = None):
        import mujoco

        self._mj = mujoco
        self.arm = arm
        self.cfg = config or IKConfig()
        self.model = arm.load_model()
        self.data = mujoco.MjData(self.model)
        self.qadr = np.array([self.model.joint(j).qposadr[0] for j in arm.joint_names])
        self.dadr = np.array([self.model.joint(j).dofadr[0] for j in arm.joint_names])
        lower, upper = arm.joint_limits
        self.lo, self.hi = np.array(lower), np.array(upper)
        self.site = self.model.site(arm.tcp_site).id

    def fk(self, q) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [3] and rotation [3, 3] at joint angles ``q``."""
        self.data.qpos[self.qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def _solve_from(self, pos, rot, q0) -> tuple[np.ndarray, float, float]:
        mj, m, d, cfg = self._mj, self.model, self.data, self.cfg
        q = np.clip(np.asarray(q0, float), self.lo, self.hi)
        jp, jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        for _ in range(cfg.max_iters):
            cur_p, cur_r = self.fk(q)
            mj.mj_comPos(m, d)
            e_p = pos - cur_p
            r_err = rot @ cur_r.T  # rotation taking current to target, world frame
            quat = np.zeros(4)
            mj.mju_mat2Quat(quat, r_err.flatten())
            angle = 2 * math.acos(np.clip(quat[0], -1, 1))
            axis = quat[1:] / max(np.linalg.norm(quat[1:]), 1e-12)
            if angle > math.pi:
                angle -= 2 * math.pi
            e_r = axis * angle
            if np.linalg.norm(e_p) < cfg.pos_tol and abs(angle) < cfg.rot_tol:
                break
            mj.mj_jacSite(m, d, jp, jr, self.site)
            j = np.vstack([jp[:, self.dadr], jr[:, self.dadr]])  # [6, J]
            e = np.concatenate([e_p, 0.5 * e_r])
            w = np.diag([1, 1, 1, 0.5, 0.5, 0.5])
            dq = j.T @ np.linalg.solve(j @ j.T + cfg.damping * np.eye(6), w @ e * 2)
            n = np.linalg.norm(dq)
            if n > cfg.max_step:
                dq *= cfg.max_step / n
            q = np.clip(q + dq, self.lo, self.hi)
        cur_p, cur_r = self.fk(q)
        quat = np.zeros(4)
        mj.mju_mat2Quat(quat, (rot @ cur_r.T).flatten())
        return q, float(np.linalg.norm(pos - cur_p)), float(2 * math.acos(min(1.0, abs(quat[0]))))

    def solve(self, pos, yaw: float, q_init, lean: np.ndarray | None = None) -> np.ndarray:
        """Joint angles putting the TCP at ``pos`` pointing down (leaning as ``lean`` says: :func:`down_rotation`)
        with ``yaw`` (mod pi, since the gripper is symmetric), closest to ``q_init``; raise :class:`IKError` if
        unreachable."""
        pos = np.asarray(pos, float)
        best, best_cost, best_res = None, math.inf, (math.inf, math.inf)
        for y in (yaw, yaw + math.pi, yaw - math.pi):
            for seed in (q_init, self.arm.home):
                q, ep, er = self._solve_from(pos, down_rotation(y, lean), seed)
                if ep < self.cfg.pos_tol * 1.5 and er < self.cfg.rot_tol * 1.5:
                    cost = float(np.abs(q - np.asarray(q_init)).max())
                    if cost < best_cost:
                        best, best_cost = q, cost
                elif ep < best_res[0]:
                    best_res = (ep, er)
            if best is not None and best_cost < 1.0:
                break
        if best is None:
            raise IKError(
                f"target {np.round(pos, 3).tolist()} yaw {yaw:.2f} unreachable: "
                f"best residual {best_res[0] * 1000:.0f} mm, {math.degrees(best_res[1]):.0f} deg")
        return best
