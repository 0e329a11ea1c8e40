import numpy as np

from ivl_embodied.perception.grounding import GroundedObject
from ivl_embodied.robot.skills import Skills
from ivl_embodied.sim.oracle import object_box
from ivl_embodied.sim.sim_robot import SimRobot, SimRobotConfig
from ivl_embodied.sim.tasks import parse_task, scene_for
from ivl_embodied.sim.world import SimWorld

TASK = parse_task({"seed": 11, "instruction": "put the red cube in the green bowl",
                   "goal": {"type": "place_in", "object": {"color": "red", "shape": "cube"},
                            "target": {"color": "green", "shape": "bowl"}}})


def test_camera_intrinsics_and_metric_depth():
    w = SimWorld(scene_for(TASK))
    try:
        info = w.camera_info()
        assert (info.width, info.height) == (640, 480)
        assert abs(info.k[0, 0] - 617) < 3 and info.k[0, 0] == info.k[1, 1]
        assert tuple(info.k[:2, 2]) == (320, 240)
        depth = w.render_depth()
        assert depth.shape == (480, 640) and depth.dtype == np.float32
        # back-project table pixels: they must land on the plane z = 0
        v, u = 420, 100
        z = depth[v, u]
        p = info.t_base_camera @ np.array([(u - 320) / info.k[0, 0] * z, (v - 240) / info.k[1, 1] * z, z, 1])
        assert abs(p[2]) < 0.003, p
        # the top of the red cube projects where the depth says it is
        cube = w.scene.find("red", "cube")
        top = w.body_pos(cube.name) + [0, 0, cube.size[0]]
        uv = info.project(top[None])[0]
        z_cam = (np.linalg.inv(info.t_base_camera) @ np.append(top, 1))[2]
        assert abs(depth[int(round(uv[1])), int(round(uv[0]))] - z_cam) < 0.01
        x1, y1, x2, y2 = object_box(w, cube)
        assert x1 < uv[0] / 640 * 1000 < x2 and y1 < uv[1] / 480 * 1000 < y2
        rgb = w.render_rgb()
        assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8 and rgb.std() > 10
    finally:
        w.close()


def test_physics_is_deterministic():
    finals = []
    for _ in range(2):
        w = SimWorld(scene_for(TASK))
        w.data.ctrl[:6] = [0.3, 0.2, 1.5, 0.0, 1.0, 0.0]
        w.step(400)
        finals.append(w.data.qpos.copy())
    np.testing.assert_array_equal(finals[0], finals[1])


def test_objects_move_only_through_contact():
    """The cube stays put until a finger touches it, and every other object never moves."""
    w = SimWorld(scene_for(TASK))
    w.step(100)
    cube = w.scene.find("red", "cube").name
    others = [o.name for o in w.scene.objects if o.name != cube and o.kind in ("cube", "cylinder", "sphere")]
    start = {n: w.body_pos(n) for n in [cube, *others]}
    log = []

    def watch(world):
        log.append((world.touching(cube), world.body_pos(cube)))

    robot = SimRobot(w, SimRobotConfig(frame_period_s=0.002), frame_callback=watch)  # every step
    p = start[cube]
    h = 2 * w.scene.find("red", "cube").size[0]
    skills = Skills(robot)
    held = skills.pick("red cube", GroundedObject(np.array([p[0], p[1], h / 2]), h, 0.0,
                                                  np.array([h, h, h]), 100, False))
    assert held.height == h
    first_touch = next(i for i, (t, _) in enumerate(log) if t)
    before = np.array([q for _, q in log[:first_touch]])
    assert np.abs(before - start[cube]).max() < 1e-3  # no motion before contact
    assert w.body_pos(cube)[2] > start[cube][2] + 0.08  # lifted by the fingers
    for n in others:
        assert np.linalg.norm(w.body_pos(n) - start[n]) < 2e-3, n
    w.close()
