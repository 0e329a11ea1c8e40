"""A task's tabletop scene as a Gazebo (gz-sim Harmonic) world, for the robot-side contract (docs/sim_contract.md).

:func:`world_sdf` writes the same scene our MuJoCo world builds from a task (table, objects, their colours and
poses, the light) with an ``rgbd_camera`` sensor where our camera is, with the same image size and field of view,
publishing on the gz topics ``sim/gazebo/ros_gz_bridge.yaml`` bridges and stamping the contract's optical frame.
The arm is not in the world: ``launch/gazebo.launch.py`` spawns it from the URDF its ``robot_state_publisher``
publishes (e.g. ur_description's or franka_description's, with ``gz_ros2_control``), as a Gazebo user runs it.

    ivl-embodied gazebo-world --split val --task-index 0 --out tabletop.sdf
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from ivl_embodied.sim.world import FOVY_DEG, GRASPABLE, IMAGE_H, IMAGE_W, SceneSpec, camera_xyaxes, object_parts

WORLD = "ivl_tabletop"
CAMERA_TOPIC = "camera"  # an rgbd_camera publishes <topic>/image, <topic>/depth_image, <topic>/camera_info
OPTICAL_FRAME = "camera_color_optical_frame"
CAMERA_RATE_HZ = 5.0


def _v(values) -> str:
    return " ".join(f"{float(x):.6g}" for x in values)


def _geometry(shape: str, size) -> str:
    """SDF geometry of a MuJoCo-sized primitive (half-extents, cylinder half-height)."""
    if shape == "box":
        return f"<box><size>{_v(2 * np.asarray(size))}</size></box>"
    if shape == "cylinder":
        return f"<cylinder><radius>{size[0]:.6g}</radius><length>{2 * size[1]:.6g}</length></cylinder>"
    return f"<sphere><radius>{size[0]:.6g}</radius></sphere>"


def camera_pose(scene: SceneSpec) -> tuple[float, ...]:
    """The camera's SDF pose (x y z roll pitch yaw): a gz camera looks along its +x with +z up."""
    d = np.asarray(scene.camera_target, float) - np.asarray(scene.camera_pos, float)
    yaw = math.atan2(d[1], d[0])
    pitch = math.atan2(-d[2], math.hypot(d[0], d[1]))
    return (*scene.camera_pos, 0.0, pitch, yaw)


def horizontal_fov() -> float:
    """Our camera's horizontal field of view (rad), from its vertical one and the image's aspect."""
    return 2 * math.atan(math.tan(math.radians(FOVY_DEG) / 2) * IMAGE_W / IMAGE_H)


def camera_static_tf(world: str) -> list[str]:
    """``static_transform_publisher`` arguments for base_link → the optical frame (x right, y down, z forward) of
    the camera in ``world`` (SDF text; the arm's base at the world origin, the camera rolled 0 as we write it)."""
    import xml.etree.ElementTree as ET

    import mujoco

    (cam,) = [m for m in ET.fromstring(world).iter("model") if m.get("name") == "rgbd_camera"]
    x, y, z, _, pitch, yaw = (float(v) for v in cam.find("pose").text.split())
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    pos = np.array([x, y, z])
    xy = camera_xyaxes(pos, pos + forward)
    rot = np.stack([xy[:3], -xy[3:], forward], axis=1)
    wxyz = np.zeros(4)
    mujoco.mju_mat2Quat(wxyz, rot.flatten())
    xyzw = (*wxyz[1:], wxyz[0])
    return ([f"--{k}={v:.6f}" for k, v in zip(("x", "y", "z", "qx", "qy", "qz", "qw"), (*pos, *xyzw), strict=True)]
            + ["--frame-id=base_link", f"--child-frame-id={OPTICAL_FRAME}"])


def _model(o) -> str:
    rgba = _v(o.rgba)
    x, y = o.xy
    free = o.kind in GRASPABLE
    links = []
    for i, p in enumerate(object_parts(o)):
        geom = _geometry(p.shape, p.size)
        pose = f"<pose>{_v(p.pos)} 0 0 {p.yaw:.6g}</pose>"
        visual = (f'<visual name="v{i}">{pose}<geometry>{geom}</geometry><material><ambient>{rgba}</ambient>'
                  f"<diffuse>{rgba}</diffuse></material></visual>")
        collision = (f'<collision name="c{i}">{pose}<geometry>{geom}</geometry><surface><friction><ode>'
                     f"<mu>1.2</mu><mu2>1.2</mu2></ode></friction></surface></collision>") if p.collides else ""
        links.append(visual + collision)
    inertial = ""
    if free:  # 60 g, as in our world; a box's inertia about its centre is close enough for these small things
        (p,) = object_parts(o)
        e = 2 * np.array([p.size[0]] * 3 if p.shape != "cylinder" else [p.size[0], p.size[0], p.size[1]])
        ix, iy, iz = (0.06 / 12 * (e[1] ** 2 + e[2] ** 2), 0.06 / 12 * (e[0] ** 2 + e[2] ** 2),
                      0.06 / 12 * (e[0] ** 2 + e[1] ** 2))
        inertial = (f"<inertial><pose>{_v(p.pos)} 0 0 0</pose><mass>0.06</mass><inertia><ixx>{ix:.3g}</ixx>"
                    f"<iyy>{iy:.3g}</iyy><izz>{iz:.3g}</izz><ixy>0</ixy><ixz>0</ixz><iyz>0</iyz></inertia>"
                    f"</inertial>")
    return (f'<model name="{o.name}"><static>{"false" if free else "true"}</static>'
            f"<pose>{x:.6g} {y:.6g} {0.0005 if free else 0.0:.6g} 0 0 {o.yaw:.6g}</pose>"
            f'<link name="link">{inertial}{"".join(links)}</link></model>')


def world_sdf(scene: SceneSpec, name: str = WORLD) -> str:
    """SDF 1.9 text of ``scene`` as a gz-sim world (no arm: it is spawned from its URDF)."""
    amb, dif = scene.ambient, scene.light_diffuse
    objects = "\n    ".join(_model(o) for o in scene.objects)
    table_rgba = _v(scene.table_rgba)
    return f"""<?xml version="1.0"?>
<!-- Written by `ivl-embodied gazebo-world`: a task's scene, as our MuJoCo world builds it (ivl_embodied.sim.world).
     The arm's base is the world origin, z up, the table top at z = 0. -->
<sdf version="1.9">
  <world name="{name}">
    <physics name="2ms" type="ignored"><max_step_size>0.002</max_step_size><real_time_factor>1.0</real_time_factor>
    </physics>
    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>
    <plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>
    <plugin filename="gz-sim-scene-broadcaster-system" name="gz::sim::systems::SceneBroadcaster"/>
    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors"><render_engine>ogre2</render_engine>
    </plugin>
    <scene><ambient>{amb:.3g} {amb:.3g} {amb:.3g} 1</ambient><background>0.3 0.3 0.32 1</background></scene>
    <light type="directional" name="key"><cast_shadows>true</cast_shadows><direction>{_v(scene.light_dir)}</direction>
      <diffuse>{dif:.3g} {dif:.3g} {dif:.3g} 1</diffuse></light>
    <model name="floor"><static>true</static><pose>0 0 -0.75 0 0 0</pose><link name="link">
      <collision name="c"><geometry><plane><normal>0 0 1</normal><size>6 6</size></plane></geometry></collision>
      <visual name="v"><geometry><plane><normal>0 0 1</normal><size>6 6</size></plane></geometry></visual>
    </link></model>
    <model name="table"><static>true</static><pose>0.42 0 -0.02 0 0 0</pose><link name="link">
      <collision name="c"><geometry><box><size>1.2 1.4 0.04</size></box></geometry></collision>
      <visual name="v"><geometry><box><size>1.2 1.4 0.04</size></box></geometry><material>
        <ambient>{table_rgba}</ambient><diffuse>{table_rgba}</diffuse></material></visual></link></model>
    <model name="rgbd_camera"><static>true</static><pose>{_v(camera_pose(scene))}</pose><link name="link">
      <sensor name="rgbd" type="rgbd_camera"><topic>{CAMERA_TOPIC}</topic><gz_frame_id>{OPTICAL_FRAME}</gz_frame_id>
        <update_rate>{CAMERA_RATE_HZ:g}</update_rate><always_on>true</always_on>
        <camera><horizontal_fov>{horizontal_fov():.6g}</horizontal_fov>
          <image><width>{IMAGE_W}</width><height>{IMAGE_H}</height><format>R8G8B8</format></image>
          <clip><near>0.05</near><far>10</far></clip></camera></sensor></link></model>
    {objects}
  </world>
</sdf>
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--split", default="val", choices=("train", "val", "heldout", "unseen_phrasing"))
    src.add_argument("--tasks", metavar="FILE.jsonl", help="a task file instead of a split")
    parser.add_argument("--task-index", type=int, default=0, help="which task's scene")
    parser.add_argument("--out", metavar="FILE.sdf", help="write here (default: standard output)")


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.sim.tasks import load_split, load_tasks, scene_for

    tasks = load_tasks(args.tasks) if args.tasks else load_split(args.split)
    if not 0 <= args.task_index < len(tasks):
        print(f"--task-index {args.task_index} outside 0..{len(tasks) - 1}", file=sys.stderr)
        return 2
    text = world_sdf(scene_for(tasks[args.task_index]))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
