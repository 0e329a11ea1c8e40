"""The oracle planner: the ground-truth plan for a task, with boxes projected from object geometry.

It reads simulator state (object poses and sizes) only to *write the plan text*; execution then
grounds those boxes from the depth image like any other planner's output.
"""

from __future__ import annotations

import math

import numpy as np

from ivl_embodied.perception.grounding import CameraInfo
from ivl_embodied.plan.schema import GROUNDING_MAX, Plan, Step, format_plan
from ivl_embodied.sim.world import ObjectSpec, SimWorld


def object_surface_points(o: ObjectSpec, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Points on the object's outer surface [N, 3] in the world frame (enough for a tight box)."""
    k, s = o.kind, o.size
    ang = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    if k == "cube":
        c = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * s[0]
    elif k == "sphere":
        el = np.linspace(-math.pi / 2, math.pi / 2, 9)
        c = np.array([[math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)]
                      for e in el for a in ang]) * s[0]
    elif k in ("cylinder", "bowl"):
        r, z0, z1 = (s[0], -s[1], s[1]) if k == "cylinder" else (s[0] + 0.006, 0.0, s[1] + 0.006)
        c = np.array([[r * math.cos(a), r * math.sin(a), z] for a in ang for z in (z0, z1)])
    elif k == "tray":
        hx, hy = s[0] + 0.006, s[1] + 0.006
        c = np.array([[x * hx, y * hy, z] for x in (-1, 1) for y in (-1, 1) for z in (0.0, s[2] + 0.006)])
    else:  # zone
        c = np.array([[x * s[0], y * s[0], 0.001] for x in (-1, 1) for y in (-1, 1)])
    return c @ rot.T + pos


def project_box(points: np.ndarray, cam: CameraInfo) -> tuple[int, int, int, int]:
    """Tight 0..1000 box around the projection of ``points`` (clipped to the image)."""
    uv = cam.project(points)  # [N, 2] pixels
    u1, v1 = uv.min(axis=0)
    u2, v2 = uv.max(axis=0)
    sx, sy = GROUNDING_MAX / cam.width, GROUNDING_MAX / cam.height
    x1, x2 = (int(np.clip(round(v * sx), 0, GROUNDING_MAX)) for v in (u1, u2))
    y1, y2 = (int(np.clip(round(v * sy), 0, GROUNDING_MAX)) for v in (v1, v2))
    return x1, y1, x2, y2


def object_box(world: SimWorld, o: ObjectSpec) -> tuple[int, int, int, int]:
    rot = world.data.body(o.name).xmat.reshape(3, 3)
    return project_box(object_surface_points(o, world.body_pos(o.name), rot), world.camera_info())


def oracle_plan(world: SimWorld, goal) -> Plan:
    """Ground-truth plan for ``goal`` (a :class:`~ivl_embodied.sim.tasks.Goal`) in ``world``."""
    sc = world.scene
    obj = sc.find(goal.object.color, goal.object.shape)
    tgt = sc.find(goal.target.color, goal.target.shape)
    ob, tb = object_box(world, obj), object_box(world, tgt)
    if goal.type == "push_to":
        return Plan((Step("push", obj.phrase, ob, tgt.phrase, tb),))
    return Plan((Step("pick", obj.phrase, ob), Step("place", obj.phrase, target=tgt.phrase, target_box=tb)))


class OraclePlanner:
    """Planner protocol: ``reset(task, world)`` then ``plan(rgb, instruction) -> str``."""

    name = "oracle"

    def __init__(self) -> None:
        self._world: SimWorld | None = None
        self._goal = None

    def reset(self, task, world: SimWorld | None = None) -> None:
        self._goal, self._world = task.goal, world

    def plan(self, rgb: np.ndarray, instruction: str) -> str:
        if self._world is None or self._goal is None:
            raise RuntimeError("the oracle planner needs reset(task, world) before plan()")
        return format_plan(oracle_plan(self._world, self._goal))
