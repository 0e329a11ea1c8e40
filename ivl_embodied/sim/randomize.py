"""Seeded domain randomisation: object layout, colour shades, lighting, camera jitter, distractors.

:func:`sample_scene` builds a :class:`~ivl_embodied.sim.world.SceneSpec` from a
``numpy.random.Generator`` and the (colour, kind) pairs a task needs; the same seed gives the same
scene. Every (colour, kind) pair appears at most once per scene, so "the red cube" is unambiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ivl_embodied.sim.world import COLORS, CONTAINERS, GRASPABLE, ObjectSpec, SceneSpec


@dataclass(frozen=True)
class RandomizationConfig:
    workspace_x: tuple[float, float] = (0.36, 0.62)  # m, where object centres may be
    workspace_y: tuple[float, float] = (-0.24, 0.24)
    n_graspable: tuple[int, int] = (3, 5)  # inclusive range, goal objects included
    p_extra_container: float = 0.5
    p_extra_zone: float = 0.3
    shade_jitter: float = 0.06  # per RGB channel
    camera_pos_jitter: float = 0.02  # m per axis
    camera_target_jitter: float = 0.015  # m per axis
    light_diffuse: tuple[float, float] = (0.5, 0.85)
    ambient: tuple[float, float] = (0.25, 0.45)
    min_gap: float = 0.02  # m between footprints
    max_tries: int = 200

    def __post_init__(self) -> None:
        for name in ("workspace_x", "workspace_y", "n_graspable", "light_diffuse", "ambient"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {getattr(self, name)!r}")
        if self.n_graspable[0] < 1 or self.n_graspable[1] > 6:
            raise ValueError(f"n_graspable must lie within 1..6, got {self.n_graspable!r}")
        for name in ("p_extra_container", "p_extra_zone"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)!r}")
        if self.max_tries < 10:
            raise ValueError(f"max_tries must be >= 10, got {self.max_tries!r}")


def _size(kind: str, rng: np.random.Generator) -> tuple[float, ...]:
    if kind == "cube":
        return (float(rng.uniform(0.019, 0.023)),)
    if kind == "cylinder":
        return (float(rng.uniform(0.018, 0.021)), float(rng.uniform(0.022, 0.028)))
    if kind == "sphere":
        return (float(rng.uniform(0.021, 0.024)),)
    if kind == "bowl":
        return (float(rng.uniform(0.06, 0.07)), float(rng.uniform(0.035, 0.045)))
    if kind == "tray":
        return (float(rng.uniform(0.065, 0.075)), float(rng.uniform(0.06, 0.07)), 0.025)
    return (float(rng.uniform(0.055, 0.065)),)  # zone


def footprint(kind: str, size: tuple[float, ...]) -> float:
    """Radius of the disc an object (plus room for open fingers around it) needs on the table."""
    if kind in GRASPABLE:
        return 0.045
    if kind == "bowl":
        return size[0] + 0.012
    if kind == "tray":
        return math.hypot(size[0], size[1]) + 0.01
    return size[0] * 1.2


def _shade(color: str, rng: np.random.Generator, jitter: float) -> tuple[float, float, float, float]:
    base = np.asarray(COLORS[color])
    rgb = np.clip(base + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)


def _seg_dist(p, a, b) -> float:
    ab, ap = b - a, p - a
    t = float(np.clip(ap @ ab / max(ab @ ab, 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(ap - t * ab))


def sample_scene(required: list[tuple[str, str]], rng: np.random.Generator,
                 config: RandomizationConfig | None = None,
                 push_pair: tuple[int, int] | None = None) -> SceneSpec:
    """A random scene containing every (colour, kind) in ``required`` (in order: obj0, obj1, …).

    ``push_pair`` = (object index, zone index) in ``required``: the object is placed 0.12–0.2 m
    from the zone, and nothing else may stand in the corridor the push sweeps.
    """
    cfg = config or RandomizationConfig()
    if len(set(required)) != len(required):
        raise ValueError(f"required (colour, kind) pairs must be distinct, got {required}")
    wants: list[tuple[str, str]] = list(required)
    present = set(required)
    n_grasp = int(rng.integers(cfg.n_graspable[0], cfg.n_graspable[1] + 1))
    colors = list(COLORS)

    def fresh(kinds) -> tuple[str, str]:
        while True:
            pair = (colors[int(rng.integers(len(colors)))], kinds[int(rng.integers(len(kinds)))])
            if pair not in present:
                present.add(pair)
                return pair

    if rng.random() < cfg.p_extra_container:
        wants.append(fresh(CONTAINERS))
    if rng.random() < cfg.p_extra_zone:
        wants.append(fresh(("zone",)))
    while sum(k in GRASPABLE for _, k in wants) < n_grasp:
        wants.append(fresh(GRASPABLE))

    # big things first; the required ones must fit, distractors are dropped if they do not
    order = sorted(range(len(wants)), key=lambda i: (i >= len(required), wants[i][1] in GRASPABLE))
    placed: dict[int, tuple[np.ndarray, float]] = {}
    sizes = {i: _size(wants[i][1], rng) for i in range(len(wants))}
    corridor: tuple[np.ndarray, np.ndarray] | None = None
    for i in order:
        kind = wants[i][1]
        r = footprint(kind, sizes[i])
        for _ in range(cfg.max_tries):
            xy = np.array([rng.uniform(*cfg.workspace_x), rng.uniform(*cfg.workspace_y)])
            if push_pair is not None and i == push_pair[0] and push_pair[1] in placed:
                zone_xy = placed[push_pair[1]][0]
                ang = rng.uniform(0, 2 * math.pi)
                xy = zone_xy + rng.uniform(0.12, 0.2) * np.array([math.cos(ang), math.sin(ang)])
                behind = xy + 0.07 * (xy - zone_xy) / np.linalg.norm(xy - zone_xy)
                if not (cfg.workspace_x[0] - 0.04 <= behind[0] <= cfg.workspace_x[1] + 0.02
                        and abs(behind[1]) <= cfg.workspace_y[1] + 0.02
                        and cfg.workspace_x[0] <= xy[0] <= cfg.workspace_x[1]
                        and cfg.workspace_y[0] <= xy[1] <= cfg.workspace_y[1]):
                    continue
            # a pushed object only keeps its distance to the zone it is pushed into (set above)
            skip = push_pair[1] if push_pair is not None and i == push_pair[0] else None
            ok = all(np.linalg.norm(xy - q) >= r + rq + cfg.min_gap
                     for j, (q, rq) in placed.items() if j != skip)
            if ok and corridor is not None and _seg_dist(xy, *corridor) < r + 0.05:
                ok = False
            if ok:
                placed[i] = (xy, r)
                if push_pair is not None and i == push_pair[0]:
                    zone_xy = placed[push_pair[1]][0]
                    corridor = (xy + 0.08 * (xy - zone_xy) / np.linalg.norm(xy - zone_xy), zone_xy)
                break
        else:
            if i < len(required):
                raise RuntimeError(f"could not place required {wants[i]} after {cfg.max_tries} tries")
    if push_pair is not None:
        # the zone was placed before its object; keep distractors out of the corridor
        for j in list(placed):
            if j not in push_pair and corridor is not None and _seg_dist(placed[j][0], *corridor) < placed[j][1] + 0.05:
                if j < len(required):
                    raise RuntimeError(f"required {wants[j]} blocks the push corridor")
                del placed[j]

    objects = []
    for i in sorted(placed):
        color, kind = wants[i]
        xy = placed[i][0]
        yaw = float(rng.uniform(-math.pi, math.pi)) if kind != "zone" else 0.0
        objects.append(ObjectSpec(name=f"obj{i}", kind=kind, color=color,
                                  rgba=_shade(color, rng, cfg.shade_jitter), size=sizes[i],
                                  xy=(float(xy[0]), float(xy[1])), yaw=yaw))
    jp, jt = cfg.camera_pos_jitter, cfg.camera_target_jitter
    cam_pos = np.array([1.15, 0.0, 0.78]) + rng.uniform(-jp, jp, 3)
    cam_tgt = np.array([0.47, 0.0, 0.0]) + rng.uniform(-jt, jt, 3)
    ang = rng.uniform(0, 2 * math.pi)
    light_dir = (0.4 * math.cos(ang), 0.4 * math.sin(ang), -1.0)
    table = np.clip(np.array([0.62, 0.56, 0.48]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
    return SceneSpec(
        objects=tuple(objects),
        camera_pos=tuple(float(v) for v in cam_pos),
        camera_target=tuple(float(v) for v in cam_tgt),
        light_dir=light_dir,
        light_diffuse=float(rng.uniform(*cfg.light_diffuse)),
        ambient=float(rng.uniform(*cfg.ambient)),
        table_rgba=(float(table[0]), float(table[1]), float(table[2]), 1.0),
    )
