"""3D grounding: a 2D box in InternVL's 0..1000 frame + a depth image → where the thing is in 3D.

ROS-free and MuJoCo-free: the inputs are what ``sensor_msgs/Image`` (depth, metres) and
``sensor_msgs/CameraInfo`` carry, plus the camera pose in the robot base frame (from TF).

Algorithm (:func:`ground_box`):

1. back-project the box's pixels, and a context ring around it, into the base frame;
2. fit the support plane (the table) with RANSAC on the context, where the table dominates;
3. keep the points inside the (slightly enlarged) box that stand above the plane;
4. cluster them with DBSCAN and keep the cluster with most points inside the original box, so a
   neighbour that leaks into a box that is a few percent off, or a partial occluder, is dropped;
5. the object's top is a high percentile of its height above the plane; its centre (x, y) is the
   middle of its top surface (the part a camera above the table always sees, so one view is not
   biased towards the camera); its extent is a percentile box of the cluster.

If nothing stands above the plane the box is a flat target (a region marked on the table): its
centre is the median of the plane points in the box and ``flat`` is set. With ``region=True``
(push targets) the box is always treated as an area of the plane, so an object standing in it or
in front of it is ignored; a partly hidden area is located by the box centre's ray.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ivl_embodied.plan.schema import GROUNDING_MAX, validate_box

log = logging.getLogger(__name__)


class GroundingError(RuntimeError):
    """The box could not be grounded; the message says why."""


@dataclass(frozen=True)
class CameraInfo:
    """What ``sensor_msgs/CameraInfo`` carries, plus the optical frame's pose in the base frame.

    ``k`` is the 3x3 intrinsic matrix, ``d`` the plumb-bob distortion (zero for the sim camera),
    ``t_base_camera`` the 4x4 transform taking points in the optical frame (x right, y down,
    z forward) to the robot base frame.
    """

    width: int
    height: int
    k: np.ndarray
    t_base_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    frame_id: str = "camera_color_optical_frame"
    d: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if not (isinstance(self.width, int) and self.width > 0):
            raise ValueError(f"width must be a positive int, got {self.width!r}")
        if not (isinstance(self.height, int) and self.height > 0):
            raise ValueError(f"height must be a positive int, got {self.height!r}")
        k = np.asarray(self.k, dtype=float)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ValueError(f"k must be a finite 3x3 intrinsic matrix with fx, fy > 0, got {k.tolist()}")
        t = np.asarray(self.t_base_camera, dtype=float)
        if t.shape != (4, 4) or not np.allclose(t[3], [0, 0, 0, 1]):
            raise ValueError(f"t_base_camera must be a 4x4 homogeneous transform, got {t.tolist()}")
        if not np.allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-4):
            raise ValueError("t_base_camera rotation is not orthonormal")
        if any(abs(x) > 1e-9 for x in self.d):
            raise ValueError(f"distorted images are not supported; rectify first (d={self.d!r})")
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "t_base_camera", t)

    def project(self, points_base: np.ndarray) -> np.ndarray:
        """Pixel coordinates [N, 2] (u, v) of base-frame points [N, 3]."""
        t_cam_base = np.linalg.inv(self.t_base_camera)
        p = points_base @ t_cam_base[:3, :3].T + t_cam_base[:3, 3]  # [N, 3] optical frame
        uv = p @ self.k.T  # [N, 3]
        return uv[:, :2] / uv[:, 2:3]


@dataclass(frozen=True)
class GroundingConfig:
    min_depth: float = 0.1  # m; closer returns are invalid
    max_depth: float = 4.0  # m
    context: float = 0.6  # context ring for the plane fit, in box sizes on each side
    box_margin: float = 0.12  # the crop is the box grown by this fraction of its size per side
    plane_threshold: float = 0.006  # m; RANSAC inlier distance and "on the plane" height
    min_plane_normal_z: float = 0.85  # the support plane must be roughly horizontal in base frame
    dbscan_eps: float = 0.012  # m
    dbscan_min_points: int = 8
    min_object_points: int = 25
    top_band: float = 0.01  # m below the top that counts as the top surface
    max_points: int = 30000  # stride-subsample crops larger than this
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth!r}, {self.max_depth!r}")
        for name in ("context", "box_margin"):
            v = getattr(self, name)
            if not 0 <= v <= 3:
                raise ValueError(f"{name} must be in [0, 3], got {v!r}")
        for name in ("plane_threshold", "dbscan_eps", "top_band"):
            v = getattr(self, name)
            if not 0 < v < 0.2:
                raise ValueError(f"{name} must be in (0, 0.2) m, got {v!r}")
        if not 0 < self.min_plane_normal_z <= 1:
            raise ValueError(f"min_plane_normal_z must be in (0, 1], got {self.min_plane_normal_z!r}")
        if self.dbscan_min_points < 1 or self.min_object_points < 1 or self.max_points < 100:
            raise ValueError(
                f"bad point counts: dbscan_min_points={self.dbscan_min_points!r}, "
                f"min_object_points={self.min_object_points!r}, max_points={self.max_points!r}")


@dataclass(frozen=True)
class GroundedObject:
    """An object (or flat region) located in the base frame.

    ``position``: centre of the top surface in x, y; z is half-way between support and top.
    ``top_z``/``support_z``: heights of its top and of the plane it stands on, at its centre.
    ``extent``: size along base x, y, z. ``flat``: nothing stands above the plane (a region).
    """

    position: np.ndarray
    top_z: float
    support_z: float
    extent: np.ndarray
    n_points: int
    flat: bool
    pixels: np.ndarray | None = None  # [N, 2] (u, v) of the points it was measured from (scene checks)

    @property
    def height(self) -> float:
        return self.top_z - self.support_z


def box_to_pixels(box, width: int, height: int) -> tuple[int, int, int, int]:
    """0..1000 box → integer pixel box [u1, v1, u2, v2) clipped to the image."""
    x1, y1, x2, y2 = validate_box(box)
    u1 = int(np.floor(x1 / GROUNDING_MAX * width))
    v1 = int(np.floor(y1 / GROUNDING_MAX * height))
    u2 = int(np.ceil(x2 / GROUNDING_MAX * width))
    v2 = int(np.ceil(y2 / GROUNDING_MAX * height))
    return max(u1, 0), max(v1, 0), min(max(u2, u1 + 1), width), min(max(v2, v1 + 1), height)


def _backproject(depth, cam: CameraInfo, u1, v1, u2, v2, stride, cfg):
    """Base-frame points and their pixel coords for valid depth in [u1:u2, v1:v2]."""
    vs, us = np.mgrid[v1:v2:stride, u1:u2:stride]  # [h, w] each
    z = depth[vs, us]
    ok = np.isfinite(z) & (z > cfg.min_depth) & (z < cfg.max_depth)
    us, vs, z = us[ok], vs[ok], z[ok]  # [N]
    return pixels_to_base(cam, us, vs, z), us, vs


def pixels_to_base(cam: CameraInfo, us: np.ndarray, vs: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Base-frame points [N, 3] of pixels (``us``, ``vs``) [N] at depths ``z`` [N] (metres)."""
    fx, fy, cx, cy = cam.k[0, 0], cam.k[1, 1], cam.k[0, 2], cam.k[1, 2]
    p_cam = np.stack([(us - cx) / fx * z, (vs - cy) / fy * z, z], axis=1)  # [N, 3] optical
    return p_cam @ cam.t_base_camera[:3, :3].T + cam.t_base_camera[:3, 3]  # [N, 3] base


def _fit_plane(points: np.ndarray, cfg: GroundingConfig) -> np.ndarray:
    """Support plane (a, b, c, d) with c > 0, unit normal, via open3d RANSAC."""
    import open3d as o3d

    if len(points) < 3:
        raise GroundingError(f"only {len(points)} valid depth points around the box")
    o3d.utility.random.seed(cfg.seed)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    plane, inliers = pcd.segment_plane(cfg.plane_threshold, 3, 200)
    plane = np.asarray(plane, dtype=float)
    plane /= np.linalg.norm(plane[:3])
    if plane[2] < 0:
        plane = -plane
    if plane[2] < cfg.min_plane_normal_z or len(inliers) < 0.2 * len(points):
        # no horizontal plane dominates the context: assume a horizontal support at the low end
        z0 = float(np.percentile(points[:, 2], 5))
        log.debug("plane fit rejected (normal %s, %d inliers); using z=%.3f", plane[:3], len(inliers), z0)
        plane = np.array([0.0, 0.0, 1.0, -z0])
    return plane


def ground_box(box, depth: np.ndarray, cam: CameraInfo, config: GroundingConfig | None = None,
               region: bool = False) -> GroundedObject:
    """Locate the object in ``box`` (0..1000 frame) using the depth image; see the module doc.

    ``region=True``: the box marks an area of the support plane (a push target); whatever stands
    on it, e.g. the object about to be pushed in front of it, is ignored.
    """
    cfg = config or GroundingConfig()
    depth = np.asarray(depth)
    if depth.shape != (cam.height, cam.width):
        raise GroundingError(f"depth image shape {depth.shape} does not match camera {cam.height}x{cam.width}")
    u1, v1, u2, v2 = box_to_pixels(box, cam.width, cam.height)
    bw, bh = u2 - u1, v2 - v1
    mx, my = int(round(cfg.box_margin * bw)), int(round(cfg.box_margin * bh))
    cu1, cv1 = max(u1 - mx, 0), max(v1 - my, 0)
    cu2, cv2 = min(u2 + mx, cam.width), min(v2 + my, cam.height)
    gx, gy = int(round(cfg.context * bw)) + 4, int(round(cfg.context * bh)) + 4
    xu1, xv1 = max(u1 - gx, 0), max(v1 - gy, 0)
    xu2, xv2 = min(u2 + gx, cam.width), min(v2 + gy, cam.height)
    stride = max(1, int(np.ceil(np.sqrt((xu2 - xu1) * (xv2 - xv1) / cfg.max_points))))

    ctx, cu, cv = _backproject(depth, cam, xu1, xv1, xu2, xv2, stride, cfg)
    plane = _fit_plane(ctx, cfg)
    in_crop = (cu >= cu1) & (cu < cu2) & (cv >= cv1) & (cv < cv2)
    in_box = (cu >= u1) & (cu < u2) & (cv >= v1) & (cv < v2)
    pts, pin_box = ctx[in_crop], in_box[in_crop]
    pix = np.stack([cu[in_crop], cv[in_crop]], axis=1)  # [N, 2] (u, v) of pts
    if len(pts) == 0:
        raise GroundingError(f"no valid depth inside box {list(box)} (pixels {u1},{v1},{u2},{v2})")
    h = pts @ plane[:3] + plane[3]  # [N] height above the support plane
    above = h > 1.5 * cfg.plane_threshold

    if region:
        return _ground_region(box, pts, h, pin_box, plane, cam, cfg, pix)
    best = -1
    if above.sum() >= cfg.min_object_points:
        import open3d as o3d

        obj, obj_h, obj_in_box = pts[above], h[above], pin_box[above]
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(obj))
        labels = np.asarray(pcd.cluster_dbscan(cfg.dbscan_eps, cfg.dbscan_min_points))  # [N], -1 noise
        best_score = 0
        for lab in np.unique(labels[labels >= 0]):
            score = int((obj_in_box & (labels == lab)).sum())
            if score > best_score:
                best, best_score = lab, score
        if best >= 0 and (labels == best).sum() < cfg.min_object_points:
            best = -1
    if best < 0:
        # nothing (big enough) stands above the plane: a flat target such as a marked region
        on_plane = np.abs(h) <= 1.5 * cfg.plane_threshold
        keep = (on_plane & pin_box) if (on_plane & pin_box).any() else pin_box
        flat = pts[keep]
        if len(flat) == 0:
            raise GroundingError(f"box {list(box)} holds neither an object nor the support plane")
        c = np.median(flat, axis=0)
        lo, hi = np.percentile(flat, 2, axis=0), np.percentile(flat, 98, axis=0)
        return GroundedObject(position=c, top_z=float(c[2]), support_z=float(c[2]),
                              extent=np.array([hi[0] - lo[0], hi[1] - lo[1], 0.0]),
                              n_points=len(flat), flat=True, pixels=pix[keep])
    sel = labels == best
    cl, cl_h = obj[sel], obj_h[sel]
    top_h = float(np.percentile(cl_h, 98))
    band = cl[cl_h >= top_h - cfg.top_band]
    lo_b, hi_b = np.percentile(band, 2, axis=0), np.percentile(band, 98, axis=0)
    cx, cy = 0.5 * (lo_b[0] + hi_b[0]), 0.5 * (lo_b[1] + hi_b[1])
    support_z = float(-(plane[3] + plane[0] * cx + plane[1] * cy) / plane[2])
    top_z = support_z + top_h
    lo, hi = np.percentile(cl, 2, axis=0), np.percentile(cl, 98, axis=0)
    return GroundedObject(
        position=np.array([cx, cy, 0.5 * (support_z + top_z)]),
        top_z=top_z, support_z=support_z,
        extent=np.array([hi[0] - lo[0], hi[1] - lo[1], top_h]),
        n_points=int(sel.sum()), flat=False, pixels=pix[above][sel])


def _ground_region(box, pts, h, pin_box, plane, cam: CameraInfo, cfg: GroundingConfig,
                   pix: np.ndarray) -> GroundedObject:
    """Centre of a marked area of the support plane.

    Unoccluded, the median of the in-box plane points; when things standing in front hide much of
    it, the box centre's viewing ray intersected with the plane (not pulled towards the visible part).
    """
    on_plane = (np.abs(h) <= 1.5 * cfg.plane_threshold) & pin_box
    if on_plane.sum() >= 0.95 * pin_box.sum() and on_plane.sum() > 0:
        c = np.median(pts[on_plane], axis=0)
    else:
        x1, y1, x2, y2 = validate_box(box)
        u, v = 0.5 * (x1 + x2) / GROUNDING_MAX * cam.width, 0.5 * (y1 + y2) / GROUNDING_MAX * cam.height
        ray_cam = np.linalg.solve(cam.k, np.array([u, v, 1.0]))  # optical frame, z = 1
        origin, ray = cam.t_base_camera[:3, 3], cam.t_base_camera[:3, :3] @ ray_cam
        denom = float(plane[:3] @ ray)
        if abs(denom) < 1e-6:
            raise GroundingError(f"region box {list(box)}: viewing ray parallel to the support plane")
        c = origin - (float(plane[:3] @ origin) + plane[3]) / denom * ray
    sel = pts[on_plane] if on_plane.any() else c[None]
    lo, hi = np.percentile(sel, 2, axis=0), np.percentile(sel, 98, axis=0)
    return GroundedObject(position=np.asarray(c, float), top_z=float(c[2]), support_z=float(c[2]),
                          extent=np.array([hi[0] - lo[0], hi[1] - lo[1], 0.0]),
                          n_points=int(on_plane.sum()), flat=True, pixels=pix[on_plane])
