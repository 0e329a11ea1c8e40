"""A task's scene as a Gazebo world: the same objects, and a camera that sees what ours sees (same pose, image size
and field of view), publishing on the gz topics the bridge configuration bridges, in the contract's frame."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("mujoco")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scene_and_world():
    from ivl_embodied.sim.gazebo import world_sdf
    from ivl_embodied.sim.tasks import load_split, scene_for

    scene = scene_for(load_split("val")[0])  # its camera jittered, as every scene's
    text = world_sdf(scene)
    return scene, ET.fromstring(text).find("world"), text


def _pose(el) -> np.ndarray:
    return np.array([float(v) for v in el.find("pose").text.split()])


def test_every_object_is_a_model_where_our_world_has_it(scene_and_world):
    from ivl_embodied.sim.world import GRASPABLE, object_parts

    scene, world, _ = scene_and_world
    models = {m.get("name"): m for m in world.findall("model")}
    assert {"floor", "table", "rgbd_camera"} | {o.name for o in scene.objects} == set(models)
    for o in scene.objects:
        m = models[o.name]
        pose = _pose(m)
        assert np.allclose(pose[:2], o.xy, atol=1e-5) and math.isclose(pose[5], o.yaw, abs_tol=1e-5)
        link = m.find("link")
        assert len(link.findall("visual")) == len(object_parts(o))
        colour = [float(v) for v in link.find("visual/material/diffuse").text.split()]
        assert np.allclose(colour, o.rgba, atol=1e-5)
        free = o.kind in GRASPABLE
        assert m.find("static").text == ("false" if free else "true")
        assert (link.find("inertial/mass") is not None) == free
        assert bool(link.findall("collision")) == (o.kind != "zone")  # a zone is paint on the table


def test_the_camera_sees_what_ours_sees_on_the_bridged_topics_in_the_contract_frame(scene_and_world):
    from ivl_embodied.sim.gazebo import camera_static_tf
    from ivl_embodied.sim.world import SimWorld

    scene, world, text = scene_and_world
    (cam,) = [m for m in world.findall("model") if m.get("name") == "rgbd_camera"]
    sensor = cam.find("link/sensor")
    assert sensor.get("type") == "rgbd_camera"
    bridge = yaml.safe_load((REPO / "sim" / "gazebo" / "ros_gz_bridge.yaml").read_text())
    camera_topics = {e["gz_topic_name"] for e in bridge if e["ros_topic_name"].startswith("camera/")}
    topic = sensor.find("topic").text
    assert camera_topics == {f"{topic}/image", f"{topic}/depth_image", f"{topic}/camera_info"}
    contract = (REPO / "docs" / "sim_contract.md").read_text()
    frame = sensor.find("gz_frame_id").text
    assert f"| `camera/color/image_raw` | `sensor_msgs/msg/Image` | sensor | `{frame}` |" in contract
    ours = SimWorld(scene)
    try:
        info = ours.camera_info()
    finally:
        ours.close()
    w, h = int(sensor.find("camera/image/width").text), int(sensor.find("camera/image/height").text)
    hfov = float(sensor.find("camera/horizontal_fov").text)
    assert (w, h) == (info.width, info.height)
    assert math.isclose(w / 2 / math.tan(hfov / 2), info.k[0, 0], rel_tol=1e-5)  # the same focal length
    # a gz camera looks along its +x: roll 0, then pitch and yaw; ours looks along its optical z
    _, _, _, roll, pitch, yaw = _pose(cam)
    look = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    assert roll == 0 and np.allclose(look, info.t_base_camera[:3, 2], atol=1e-5)
    assert np.allclose(_pose(cam)[:3], info.t_base_camera[:3, 3], atol=1e-5)
    # and the static transform the Gazebo launch publishes for it, read from the world, is our camera's pose
    tf = dict(a[2:].split("=", 1) for a in camera_static_tf(text))
    assert (tf["frame-id"], tf["child-frame-id"]) == ("base_link", frame)
    x, y, z, w_ = (float(tf[k]) for k in ("qx", "qy", "qz", "qw"))
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w_), 2 * (x * z + y * w_)],
                    [2 * (x * y + z * w_), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w_)],
                    [2 * (x * z - y * w_), 2 * (y * z + x * w_), 1 - 2 * (x * x + y * y)]])
    assert np.allclose(rot, info.t_base_camera[:3, :3], atol=1e-5)
    assert np.allclose([float(tf[k]) for k in "xyz"], info.t_base_camera[:3, 3], atol=1e-5)


def test_the_command_writes_a_task_scene_and_refuses_a_task_that_is_not_there(tmp_path, capsys):
    from ivl_embodied.cli import main

    out = tmp_path / "w.sdf"
    assert main(["gazebo-world", "--split", "val", "--task-index", "3", "--out", str(out)]) == 0
    assert ET.parse(out).getroot().find("world").get("name") == "ivl_tabletop"
    assert main(["gazebo-world", "--split", "val", "--task-index", "100000"]) == 2
    assert "--task-index 100000 outside 0.." in capsys.readouterr().err
