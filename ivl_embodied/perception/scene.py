"""The scene as a critic: does what stands in a box match its phrase, and did a plan reach its goal?

Two checks, both from camera data alone (RGB + depth + camera info), never from simulator state:

* :func:`check_phrase` (before moving): the object grounded from a plan's box must look like the
  plan's phrase: its colour (the dominant hue of its own pixels, the ones depth segmented) and its
  kind class (something to grasp, a container, or a flat zone, from its size).
* :func:`verify_goal` (after moving, on a fresh frame): the moved object's colour is found where
  the goal puts it (inside the container, on top of the other object, inside the zone) and no
  longer where it was.

Colours are named by hue bins around the vocabulary's colours (rendered shading and lighting move
the hue a little, never across a bin). Both checks answer ``None`` when they pass, else a reason
that names what was seen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ivl_embodied.perception.grounding import (
    CameraInfo,
    GroundedObject,
    GroundingConfig,
    GroundingError,
    box_to_pixels,
    ground_box,
    pixels_to_base,
)
from ivl_embodied.plan.schema import GROUNDING_MAX
from ivl_embodied.plan.vocabulary import CONTAINERS, GRASPABLE, ZONES, split_phrase

# hue (0..1) bins of the vocabulary's colours; red wraps around 0. Per-object median hues of 102 orange and
# yellow objects (60 val scenes and the held-out scenes that were closest): orange 0.070-0.122, yellow
# 0.1246-0.167. That is the narrowest gap, hence 0.1235.
HUE_BINS = (("red", 0.0, 0.04), ("orange", 0.04, 0.1235), ("yellow", 0.1235, 0.22), ("green", 0.22, 0.50),
            ("blue", 0.50, 0.70), ("purple", 0.70, 0.93), ("red", 0.93, 1.0001))
MIN_SATURATION = 0.35  # the table, grey floor and shadows are below this
MIN_VALUE = 0.15


@dataclass(frozen=True)
class SceneCheckConfig:
    min_color_pixels: int = 15  # fewer coloured pixels: the colour cannot be told
    min_color_share: float = 0.5  # of the coloured pixels, this share must be the phrase's colour
    container_extent: float = 0.095  # m: wider than this is a container, not something to grasp
    graspable_max_height: float = 0.075  # m
    min_goal_points: int = 12  # object-coloured points that must be found where the goal puts it
    stand_height: float = 0.012  # m above the table: standing things (zones are flat)
    stack_radius: float = 0.03  # m around the lower object's centre
    moved_radius: float = 0.015  # m: the object must have left a disc this wide around where it stood
    top_band: float = 0.004  # m below the top: a thing's top surface
    sphere_top_share: float = 0.38  # measured on 157 objects: spheres 0.23-0.31, cubes/cylinders >= 0.44
    disc_ratio: float = 1.66  # max/mean radius of the top: cylinders 1.52-1.59, cubes 1.74-1.86
    bowl_min_height: float = 0.036  # m: bowls stand 41-51 mm high, trays 31 mm
    stack_above: float = 0.02  # m above the lower object's top: the upper object's points (it is >= 38 mm)
    zone_margin: float = 0.65  # the pushed object's centre must lie within this share of the zone's half size
    flat_height: float = 0.004  # m: a zone's points lie this close to the table
    min_zone_points: int = 40
    min_box_iou: float = 0.3  # plan box vs the grounded thing's pixel box

    def __post_init__(self) -> None:
        for k, v in self.__dict__.items():
            if not v > 0:
                raise ValueError(f"SceneCheckConfig.{k} must be > 0, got {v!r}")


def hue_saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSV of ``rgb`` [..., 3] uint8, each in 0..1 (vectorised colorsys)."""
    x = np.asarray(rgb, np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(d > 0, h / 6.0, 0.0)
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return h, s, mx


def color_labels(rgb: np.ndarray) -> np.ndarray:
    """Per pixel of ``rgb`` [..., 3]: the index into :data:`COLOR_NAMES` of its hue bin, -1 if uncoloured."""
    h, s, v = hue_saturation_value(rgb)
    out = np.full(h.shape, -1, np.int8)
    for name, lo, hi in HUE_BINS:
        out[(h >= lo) & (h < hi)] = COLOR_NAMES.index(name)
    out[(s < MIN_SATURATION) | (v < MIN_VALUE)] = -1
    return out


COLOR_NAMES = tuple(dict.fromkeys(name for name, _, _ in HUE_BINS))


def dominant_color(rgb: np.ndarray, pixels: np.ndarray, cfg: SceneCheckConfig) -> tuple[str | None, float, int]:
    """(colour, its share of the coloured pixels, number of coloured pixels) at ``pixels`` [N, 2] (u, v)."""
    if pixels is None or len(pixels) == 0:
        return None, 0.0, 0
    labels = color_labels(rgb[pixels[:, 1], pixels[:, 0]])
    labels = labels[labels >= 0]
    if len(labels) < cfg.min_color_pixels:
        return None, 0.0, int(len(labels))
    counts = np.bincount(labels, minlength=len(COLOR_NAMES))
    best = int(np.argmax(counts))
    return COLOR_NAMES[best], float(counts[best] / len(labels)), int(len(labels))


def kind_class(g: GroundedObject, cfg: SceneCheckConfig) -> str:
    """``zone`` (flat), ``container`` (wide) or ``graspable``, from the grounded size."""
    if g.flat:
        return "zone"
    if max(g.extent[0], g.extent[1]) > cfg.container_extent or g.height > cfg.graspable_max_height:
        return "container"
    return "graspable"


def _class_of_kind(kind: str) -> str:
    return "graspable" if kind in GRASPABLE else "container" if kind in CONTAINERS else "zone"


def graspable_kind(g: GroundedObject, depth: np.ndarray, cam: CameraInfo, cfg: SceneCheckConfig) -> str | None:
    """``sphere``, ``cylinder`` or ``cube`` from the shape of the top of a grounded graspable thing:
    a sphere shows little flat top (share of its points within ``top_band`` of its top), a
    cylinder's top is a disc (its farthest point is closer to its centre, relative to the mean
    distance, than a square's corners). ``None`` with too few points to tell."""
    if g.pixels is None or len(g.pixels) < 20:
        return None
    u, v = g.pixels[:, 0], g.pixels[:, 1]
    p = pixels_to_base(cam, u, v, np.asarray(depth)[v, u])  # [N, 3] base frame
    top = (p[:, 2] - g.support_z) > g.height - cfg.top_band
    if top.mean() < cfg.sphere_top_share:
        return "sphere"
    xy = p[top, :2]
    r = np.linalg.norm(xy - xy.mean(axis=0), axis=1)  # [T] distance from the top's centre
    return "cylinder" if r.max() < cfg.disc_ratio * r.mean() else "cube"


def whole_object(g: GroundedObject, depth: np.ndarray, cam: CameraInfo,
                 grounding: GroundingConfig | None = None) -> GroundedObject:
    """``g`` segmented again from a box around all of its pixels, grown by half its size on each side.

    A plan box that cuts through a thing grounds only the part inside it (plus a small margin), and a
    cut disc has corners: a cylinder boxed off-centre reads as a cube. Segmented from a box that holds
    it whole, its top has its own outline. ``g`` is returned unchanged when it is flat, or when the
    new segment is not the same thing (fewer than 90% of ``g``'s pixels inside it)."""
    if g.flat or g.pixels is None or len(g.pixels) == 0:
        return g
    (u1, v1), (u2, v2) = g.pixels.min(axis=0), g.pixels.max(axis=0) + 1
    gu, gv = 0.5 * (u2 - u1), 0.5 * (v2 - v1)
    sx, sy = GROUNDING_MAX / cam.width, GROUNDING_MAX / cam.height
    box = [int(max(0.0, (u1 - gu) * sx)), int(max(0.0, (v1 - gv) * sy)),
           int(min(GROUNDING_MAX, np.ceil((u2 + gu) * sx))), int(min(GROUNDING_MAX, np.ceil((v2 + gv) * sy)))]
    cfg = grounding or GroundingConfig()
    # every pixel (stride 1): the outline test compares the top's farthest point with its mean radius,
    # which a sparser sampling of the bigger box makes noisier than the plan box's own sampling
    dense = replace(cfg, max_points=max(cfg.max_points, cam.width * cam.height))
    try:
        whole = ground_box(box, depth, cam, dense)
    except GroundingError:
        return g
    if whole.flat or whole.pixels is None or len(whole.pixels) == 0:
        return g
    (a1, b1), (a2, b2) = whole.pixels.min(axis=0), whole.pixels.max(axis=0)
    inside = ((g.pixels[:, 0] >= a1) & (g.pixels[:, 0] <= a2) & (g.pixels[:, 1] >= b1) & (g.pixels[:, 1] <= b2))
    return whole if inside.mean() >= 0.9 else g


def box_overlap(box, g: GroundedObject, width: int, height: int) -> float:
    """IoU of a plan box (0..1000 frame) and the pixel bounding box of what was grounded in it."""
    if g.pixels is None or len(g.pixels) == 0:
        return 0.0
    u1, v1, u2, v2 = box_to_pixels(box, width, height)
    a1, b1 = g.pixels.min(axis=0)
    a2, b2 = g.pixels.max(axis=0) + 1
    iw, ih = max(0, min(u2, a2) - max(u1, a1)), max(0, min(v2, b2) - max(v1, b1))
    union = (u2 - u1) * (v2 - v1) + (a2 - a1) * (b2 - b1) - iw * ih
    return float(iw * ih / max(union, 1))


def check_phrase(phrase: str, g: GroundedObject, rgb: np.ndarray, depth: np.ndarray | None = None,
                 cam: CameraInfo | None = None, cfg: SceneCheckConfig | None = None, box=None) -> str | None:
    """Why the thing grounded in ``g`` is not a ``phrase`` (``None`` when it looks like one); with
    ``depth`` and ``cam``, graspable things are told apart by shape too (:func:`graspable_kind`, on the
    whole thing: :func:`whole_object`); with
    the plan's ``box``, a standing thing must fill it (a box mostly beside a thing is about something else)."""
    cfg = cfg or SceneCheckConfig()
    try:
        color, kind = split_phrase(phrase)
    except ValueError as e:
        return str(e)
    seen_class, want_class = kind_class(g, cfg), _class_of_kind(kind)
    if seen_class != want_class:
        size = np.round(g.extent, 3).tolist()
        return f"{phrase!r}: its box holds a {seen_class} ({size} m), not a {want_class}"
    if box is not None and not g.flat:
        iou = box_overlap(box, g, rgb.shape[1], rgb.shape[0])
        if iou < cfg.min_box_iou:
            return f"{phrase!r}: its box is mostly not on the thing found there (IoU {iou:.2f} < {cfg.min_box_iou})"
    if want_class == "container":
        shape = "bowl" if g.height > cfg.bowl_min_height else "tray"
        if shape != kind:
            return f"{phrase!r}: what stands in its box is {g.height * 1000:.0f} mm high, a {shape}, not a {kind}"
    if want_class == "graspable" and depth is not None and cam is not None:
        shape = graspable_kind(whole_object(g, depth, cam), depth, cam, cfg)
        if shape is not None and shape != kind:
            return f"{phrase!r}: what stands in its box is shaped like a {shape}, not a {kind}"
    seen, share, n = dominant_color(rgb, g.pixels, cfg)
    if seen is None:
        return f"{phrase!r}: too few coloured pixels in its box ({n}) to tell its colour"
    if seen != color or share < cfg.min_color_share:
        return f"{phrase!r}: what stands in its box is {seen} ({share:.0%} of {n} coloured pixels), not {color}"
    return None


def _points(depth: np.ndarray, cam: CameraInfo, stride: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base-frame points [N, 3] of valid depth, with their pixel coordinates."""
    vs, us = np.mgrid[0:cam.height:stride, 0:cam.width:stride]
    z = depth[vs, us]
    ok = np.isfinite(z) & (z > 0.05)
    us, vs, z = us[ok], vs[ok], z[ok]
    return pixels_to_base(cam, us, vs, z), us, vs


def verify_goal(goal: str, obj_phrase: str, before: GroundedObject, target: GroundedObject, rgb: np.ndarray,
                depth: np.ndarray, cam: CameraInfo, cfg: SceneCheckConfig | None = None,
                target_phrase: str | None = None) -> str | None:
    """Why the goal is not reached in this (fresh) frame, ``None`` when it is. ``before``: the object as
    grounded before the motion; ``target``: the container, lower object or zone, grounded then too. A zone
    (``target_phrase``) is found again in this frame by its colour, flat on the table."""
    cfg = cfg or SceneCheckConfig()
    color, _ = split_phrase(obj_phrase)
    pts, us, vs = _points(np.asarray(depth), cam)
    labels = color_labels(rgb[vs, us])
    mine = labels == COLOR_NAMES.index(color)
    table = target.support_z
    standing = pts[:, 2] > table + cfg.stand_height
    p = pts[mine & standing]  # [M, 3] object-coloured things standing on the table
    d_target = np.linalg.norm(p[:, :2] - target.position[:2], axis=1)
    if goal == "place_in":
        radius = 0.3 * max(target.extent[0], target.extent[1])  # the container's floor, inside its walls
        here = p[(d_target < radius) & (p[:, 2] > target.support_z + cfg.stand_height)]
        where = f"inside the container at {np.round(target.position[:2], 3).tolist()}"
    elif goal == "stack":
        here = p[(d_target < cfg.stack_radius) & (p[:, 2] > target.top_z + cfg.stack_above)]
        where = f"on top of the object at {np.round(target.position[:2], 3).tolist()} (above {target.top_z:.3f} m)"
    elif goal == "push_to":
        if target_phrase is None:
            raise ValueError("verifying a push needs the zone's phrase")
        zone_color = COLOR_NAMES.index(split_phrase(target_phrase)[0])
        flat = pts[(labels == zone_color) & (np.abs(pts[:, 2] - table) < cfg.flat_height)]
        flat = flat[np.linalg.norm(flat[:, :2] - target.position[:2], axis=1) < 0.15]  # that zone, not another
        if len(flat) < cfg.min_zone_points:
            return f"the {target_phrase} is not seen near {np.round(target.position[:2], 3).tolist()}"
        lo, hi = np.percentile(flat[:, :2], 2, axis=0), np.percentile(flat[:, :2], 98, axis=0)
        centre, half = 0.5 * (lo + hi), 0.5 * float(np.min(hi - lo))  # the zone as seen now
        near = p[np.all(np.abs(p[:, :2] - centre) < half + 0.03, axis=1)]  # the object, in or at the zone
        c = near[:, :2].mean(axis=0) if len(near) else np.full(2, np.inf)
        here = near if np.all(np.abs(c - centre) < cfg.zone_margin * half) else near[:0]
        where = (f"inside the {target_phrase} seen at {np.round(centre, 3).tolist()} (its centre within "
                 f"{cfg.zone_margin * half:.3f} m; {len(near)} {color} points at the zone)")
    else:
        raise ValueError(f"unknown goal {goal!r}")
    if len(here) < cfg.min_goal_points:
        return f"{obj_phrase} not found {where}: {len(here)} {color} points there"
    left = np.linalg.norm(p[:, :2] - before.position[:2], axis=1) < cfg.moved_radius
    far_from_goal = d_target > max(cfg.moved_radius * 2, 0.5 * max(target.extent[0], target.extent[1]))
    if (left & far_from_goal).sum() >= cfg.min_goal_points:
        return f"{obj_phrase} still stands where it was, at {np.round(before.position[:2], 3).tolist()}"
    return None


def goal_of_plan(steps) -> tuple[str, str, str] | None:
    """(goal, object phrase, target phrase) a plan's steps achieve, or None when they are not one of
    the vocabulary's goals (pick X + place X in/on Y, or push X to Y)."""
    try:
        return _goal_of_plan(steps)
    except ValueError:  # a phrase outside the vocabulary
        return None


def _goal_of_plan(steps) -> tuple[str, str, str] | None:
    kinds = [s.action for s in steps]
    if kinds == ["push"]:
        (s,) = steps
        return ("push_to", s.object, s.target) if split_phrase(s.target)[1] in ZONES else None
    if kinds == ["pick", "place"] and steps[0].object == steps[1].object:
        t = split_phrase(steps[1].target)[1]
        return ("place_in" if t in CONTAINERS else "stack", steps[0].object, steps[1].target)
    return None
