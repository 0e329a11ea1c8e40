import numpy as np
import pytest

pytest.importorskip("open3d")

from ivl_embodied.perception.grounding import (  # noqa: E402
    CameraInfo,
    GroundingConfig,
    GroundingError,
    ground_box,
)

W, H, F = 640, 480, 615.0
CAM_H = 0.8  # camera height above the table, looking straight down


def _down_camera() -> CameraInfo:
    k = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]])
    t = np.eye(4)
    t[:3, :3] = np.diag([1.0, -1.0, -1.0])  # optical z down; base x = image right
    t[:3, 3] = [0.5, 0.0, CAM_H]
    return CameraInfo(W, H, k, t)


def _scene(boxes):
    """Depth of axis-aligned boxes (cx, cy, half, height) on a table at z=0, seen from above."""
    cam = _down_camera()
    v, u = np.mgrid[0:H, 0:W]
    x = 0.5 + (u - W / 2) / F  # ray direction at unit depth, base frame
    y = -(v - H / 2) / F
    depth = np.full((H, W), CAM_H, np.float32)
    for cx, cy, half, h in boxes:
        d = CAM_H - h
        inside = (np.abs(0.5 + (x - 0.5) * d - cx) < half) & (np.abs((y * d) - cy) < half)
        depth[inside] = np.minimum(depth[inside], d)
    return cam, depth


def _box_of(cam, cx, cy, half, h):
    pts = np.array([[cx + sx * half, cy + sy * half, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0, h)])
    uv = cam.project(pts)
    (u1, v1), (u2, v2) = uv.min(0), uv.max(0)
    return [u1 / W * 1000, v1 / H * 1000, u2 / W * 1000, v2 / H * 1000]


def _jitter(box, rng, frac=0.05):
    w, h = box[2] - box[0], box[3] - box[1]
    d = rng.uniform(-frac, frac, 4) * np.array([w, h, w, h])
    return [int(np.clip(round(v + e), 0, 1000)) for v, e in zip(box, d, strict=False)]


def test_synthetic_cube_position_and_height():
    cam, depth = _scene([(0.55, 0.05, 0.02, 0.04)])
    g = ground_box([int(v) for v in _box_of(cam, 0.55, 0.05, 0.02, 0.04)], depth, cam)
    assert not g.flat
    assert np.linalg.norm(g.position[:2] - [0.55, 0.05]) < 0.003
    assert abs(g.top_z - 0.04) < 0.003 and abs(g.support_z) < 0.002


def test_jittered_boxes_and_neighbour_leaking_in():
    rng = np.random.default_rng(0)
    # a taller neighbour 6 cm away partially enters the jittered box
    cam, depth = _scene([(0.5, 0.0, 0.02, 0.04), (0.56, 0.0, 0.02, 0.06)])
    errs = []
    for _ in range(10):
        box = _jitter(_box_of(cam, 0.5, 0.0, 0.02, 0.04), rng)
        g = ground_box(box, depth, cam)
        errs.append(np.linalg.norm(g.position[:2] - [0.5, 0.0]))
        assert abs(g.top_z - 0.04) < 0.004  # the neighbour (6 cm tall) was not picked
    assert max(errs) < 0.006


def test_partial_occlusion_by_taller_object():
    # seen from above, a wide tall plate covers one third of the cube: the visible part is found
    cam, depth = _scene([(0.5, 0.0, 0.02, 0.04)])
    v, u = np.mgrid[0:H, 0:W]
    x = 0.5 + (u - W / 2) / F * (CAM_H - 0.1)
    depth[(x > 0.5 + 0.0067) & (x < 0.6)] = CAM_H - 0.1
    g = ground_box([int(b) for b in _box_of(cam, 0.5, 0.0, 0.02, 0.04)], depth, cam)
    assert abs(g.top_z - 0.04) < 0.004
    assert abs(g.position[1]) < 0.004 and g.position[0] < 0.5  # only the visible side remains


def test_flat_region_gives_centre():
    cam, depth = _scene([])
    box = [int(v) for v in _box_of(cam, 0.45, -0.1, 0.05, 0.0)]
    g = ground_box(box, depth, cam)
    assert g.flat and np.linalg.norm(g.position[:2] - [0.45, -0.1]) < 0.004


def test_errors_are_explicit():
    cam, depth = _scene([])
    with pytest.raises(GroundingError, match="shape"):
        ground_box([0, 0, 10, 10], depth[:10], cam)
    with pytest.raises(GroundingError, match="valid depth"):
        ground_box([400, 400, 500, 500], np.zeros_like(depth), cam)
    with pytest.raises(ValueError, match="1001"):
        ground_box([0, 0, 1001, 10], depth, cam)
    with pytest.raises(ValueError, match="dbscan_eps"):
        GroundingConfig(dbscan_eps=-1.0)
    with pytest.raises(ValueError, match="fx, fy"):
        CameraInfo(W, H, np.zeros((3, 3)))


def test_rendered_sim_scene_accuracy():
    import ivl_embodied.sim  # noqa: F401  (selects the headless GL backend before mujoco loads)

    pytest.importorskip("mujoco")
    from ivl_embodied.sim.oracle import object_box
    from ivl_embodied.sim.randomize import sample_scene
    from ivl_embodied.sim.world import GRASPABLE, SimWorld

    rng = np.random.default_rng(7)
    errs, herrs = [], []
    for seed in (1, 2):
        w = SimWorld(sample_scene([("red", "cube"), ("green", "bowl")], np.random.default_rng(seed)))
        try:
            w.step(100)
            depth, cam = w.render_depth(), w.camera_info()
            for o in w.scene.objects:
                if o.kind not in GRASPABLE:
                    continue
                for _ in range(3):
                    g = ground_box(_jitter(object_box(w, o), rng), depth, cam)
                    p = w.body_pos(o.name)
                    errs.append(np.linalg.norm(g.position[:2] - p[:2]))
                    herrs.append(abs(g.top_z - o.height))
        finally:
            w.close()
    assert len(errs) >= 18
    assert max(errs) < 0.008, f"xy errors (mm): {np.round(np.array(errs) * 1000, 1)}"
    assert max(herrs) < 0.006, f"height errors (mm): {np.round(np.array(herrs) * 1000, 1)}"


def test_region_ignores_object_standing_in_it():
    # a push target: a tall object stands in the region's box; region grounding finds the area
    cam, depth = _scene([(0.45, -0.1, 0.02, 0.05)])
    box = [int(v) for v in _box_of(cam, 0.45, -0.1, 0.05, 0.0)]
    assert not ground_box(box, depth, cam).flat  # as an object box it finds the object...
    g = ground_box(box, depth, cam, region=True)  # ...as a region box, the area's centre
    assert g.flat and np.linalg.norm(g.position[:2] - [0.45, -0.1]) < 0.004 and abs(g.top_z) < 0.002
