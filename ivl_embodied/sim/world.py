"""The MuJoCo tabletop world: scene description → MJCF → model, physics and an RGB-D camera.

A :class:`SceneSpec` (plain data, built by :mod:`ivl_embodied.sim.randomize` from a seed) lists the
objects on the table, the camera pose and the lighting. :func:`build_mjcf` turns it into MJCF that
includes the arm (``ivl_embodied/sim/assets/arm.xml``); :class:`SimWorld` compiles it and owns physics and rendering.

Frames: the robot base is the world origin, z up, the table top is the plane z = 0.
Graspable objects are free bodies (they move only through contact); containers and zones are fixed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ivl_embodied.perception.grounding import CameraInfo
from ivl_embodied.plan.vocabulary import COLORS as COLOR_NAMES
from ivl_embodied.plan.vocabulary import CONTAINERS, GRASPABLE, KINDS, ZONES  # noqa: F401 (re-exported)
from ivl_embodied.robot.arm import ArmDescription, load_arm

log = logging.getLogger(__name__)

ASSET_DIR = Path(str(resources.files("ivl_embodied.sim") / "assets"))  # package data: MJCF, task files
ARM_XML = ASSET_DIR / "arm.xml"

COLORS: dict[str, tuple[float, float, float]] = {  # the vocabulary's colours as rendered
    "red": (0.85, 0.12, 0.10),
    "green": (0.12, 0.68, 0.22),
    "blue": (0.12, 0.28, 0.88),
    "yellow": (0.95, 0.82, 0.10),
    "purple": (0.55, 0.22, 0.75),
    "orange": (1.00, 0.50, 0.05),
}
if tuple(COLORS) != COLOR_NAMES:
    raise ImportError(f"sim colours {tuple(COLORS)} and the vocabulary's {COLOR_NAMES} must agree")
ARM = load_arm("ivl_arm6")  # config/robots/ivl_arm6.yaml: our 6-DOF arm, described by ARM_XML
if Path(ARM.description).resolve() != ARM_XML.resolve():
    raise ImportError(f"config/robots/ivl_arm6.yaml describes the arm with {ARM.description}, not {ARM_XML}")
ARM_JOINTS = ARM.joint_names
HOME_Q = ARM.home  # folded up behind the workspace, tool down
SETTLE_S = 0.2
"""Physics time a fresh scene runs before anyone looks at it, so objects rest on the table."""
IMAGE_W, IMAGE_H, FOVY_DEG = 640, 480, 42.5  # D435 colour stream at 640x480: fx = fy ≈ 617


@dataclass(frozen=True)
class ObjectSpec:
    """One thing on the table. ``size``: cube half-side; cylinder (radius, half-height);
    sphere radius; bowl (inner radius, wall height); tray (half-x, half-y, wall height);
    zone (half-side)."""

    name: str
    kind: str
    color: str
    rgba: tuple[float, float, float, float]
    size: tuple[float, ...]
    xy: tuple[float, float]
    yaw: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"object {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if self.color not in COLORS:
            raise ValueError(f"object {self.name!r}: color {self.color!r} not in {tuple(COLORS)}")

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.kind}"

    @property
    def height(self) -> float:
        """Height of the object's top above the table."""
        k, s = self.kind, self.size
        if k == "cylinder":
            return 2 * s[1]
        if k in ("cube", "sphere"):
            return 2 * s[0]
        if k == "bowl":
            return s[1] + 0.006
        return s[2] + 0.006 if k == "tray" else 0.001


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    camera_pos: tuple[float, float, float] = (1.15, 0.0, 0.78)
    camera_target: tuple[float, float, float] = (0.47, 0.0, 0.0)
    light_dir: tuple[float, float, float] = (0.3, 0.2, -1.0)
    light_diffuse: float = 0.7
    ambient: float = 0.35
    table_rgba: tuple[float, float, float, float] = (0.62, 0.56, 0.48, 1.0)

    def __post_init__(self) -> None:
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise ValueError(f"object names must be unique, got {names}")

    def find(self, color: str, kind: str) -> ObjectSpec:
        hits = [o for o in self.objects if o.color == color and o.kind == kind]
        if len(hits) != 1:
            raise KeyError(f"scene has {len(hits)} objects that are a {color} {kind}, expected 1")
        return hits[0]


def _f(v) -> str:
    return " ".join(f"{x:.5g}" for x in v)


@dataclass(frozen=True)
class Part:
    """One primitive of an object, in the object's frame (z = 0 at the table top under it)."""

    shape: str  # box | cylinder | sphere
    size: tuple[float, ...]  # as MuJoCo gives it: box half-extents, cylinder (radius, half-height), sphere (radius,)
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    collides: bool = True


def object_parts(o: ObjectSpec) -> tuple[Part, ...]:
    """What ``o`` is made of: the one primitive of a graspable thing (its centre at its half height), a bowl's
    base and ring of wall segments, a tray's base and four walls, a zone's flat patch (visual only)."""
    k, s = o.kind, o.size
    if k == "cube":
        return (Part("box", (s[0],) * 3, (0.0, 0.0, s[0])),)
    if k == "cylinder":
        return (Part("cylinder", tuple(s), (0.0, 0.0, s[1])),)
    if k == "sphere":
        return (Part("sphere", (s[0],), (0.0, 0.0, s[0])),)
    if k == "bowl":
        r, h, t, n = s[0], s[1], 0.006, 16
        half_w = (r + t) * math.tan(math.pi / n) + 0.002
        return (Part("cylinder", (r + t, 0.003), (0.0, 0.0, 0.003)),) + tuple(
            Part("box", (t / 2, half_w, h / 2), ((r + t / 2) * math.cos(a), (r + t / 2) * math.sin(a), h / 2 + 0.006),
                 a) for a in (2 * math.pi * i / n for i in range(n)))
    if k == "tray":
        hx, hy, h, t = s[0], s[1], s[2], 0.006
        return ((Part("box", (hx + t, hy + t, 0.003), (0.0, 0.0, 0.003)),)
                + tuple(Part("box", (t / 2, hy + t, h / 2), (sx * (hx + t / 2), 0.0, h / 2 + 0.006)) for sx in (-1, 1))
                + tuple(Part("box", (hx, t / 2, h / 2), (0.0, sy * (hy + t / 2), h / 2 + 0.006)) for sy in (-1, 1)))
    return (Part("box", (s[0], s[0], 0.0005), (0.0, 0.0, 0.0005), collides=False),)  # zone


def _object_xml(o: ObjectSpec) -> str:
    rgba = _f(o.rgba)
    x, y = o.xy
    parts = object_parts(o)
    if o.kind in GRASPABLE:
        (p,) = parts
        geom = f'type="{p.shape}" size="{_f(p.size)}"'
        # light objects with grippy, slightly soft contact so the fingers can hold them
        return (f'<body name="{o.name}" pos="{x:.5g} {y:.5g} {p.pos[2] + 0.0005:.5g}" euler="0 0 {o.yaw:.5g}">'
                f'<freejoint name="{o.name}_free"/>'
                f'<geom name="{o.name}_geom" {geom} rgba="{rgba}" mass="0.06" friction="1.2 0.01 0.001" '
                f'condim="4" solref="0.01 1" solimp="0.95 0.99 0.001"/></body>')
    geoms = "".join(f'<geom type="{p.shape}" size="{_f(p.size)}" pos="{_f(p.pos)}"'
                    + (f' euler="0 0 {p.yaw:.5g}"' if p.yaw else "") + f' rgba="{rgba}"'
                    + ("" if p.collides else ' contype="0" conaffinity="0"') + "/>" for p in parts)
    return f'<body name="{o.name}" pos="{x:.5g} {y:.5g} 0" euler="0 0 {o.yaw:.5g}">{geoms}</body>'


def camera_xyaxes(pos, target) -> np.ndarray:
    """MuJoCo camera x (right) and y (up) axes for a camera at ``pos`` looking at ``target``."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, f)
    return np.concatenate([right, up])


def build_mjcf(scene: SceneSpec, arm_file: str = "arm.xml") -> str:
    """MJCF text of ``scene``; it includes the arm's description ``arm_file`` (pass it, and the files it
    names, as assets: :func:`arm_assets`)."""
    amb, dif = scene.ambient, scene.light_diffuse
    objects = "\n    ".join(_object_xml(o) for o in scene.objects)
    return f"""<mujoco model="ivl_tabletop">
  <include file="{arm_file}"/>
  <visual><headlight ambient="{amb:.3g} {amb:.3g} {amb:.3g}" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
    <global offwidth="{IMAGE_W}" offheight="{IMAGE_H}"/><quality shadowsize="1024"/></visual>
  <worldbody>
    <light name="key" directional="true" dir="{_f(scene.light_dir)}" diffuse="{dif:.3g} {dif:.3g} {dif:.3g}"
           castshadow="true"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.3 0.3 0.32 1"/>
    <geom name="table" type="box" size="0.6 0.7 0.02" pos="0.42 0 -0.02" rgba="{_f(scene.table_rgba)}"
          friction="0.6 0.005 0.0001"/>
    <camera name="rgbd" pos="{_f(scene.camera_pos)}"
            xyaxes="{_f(camera_xyaxes(scene.camera_pos, scene.camera_target))}" fovy="{FOVY_DEG}"/>
    {objects}
  </worldbody>
</mujoco>"""


def _ensure_gl_backend() -> None:
    # Headless CPU rendering: EGL (Mesa) by default; MUJOCO_GL=osmesa also works.
    os.environ.setdefault("MUJOCO_GL", "egl")


def arm_assets(arm: ArmDescription) -> dict[str, bytes]:
    """The arm's description and the files beside it (meshes), by file name: a scene's assets."""
    folder = Path(arm.description).parent
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in (".xml", ".stl",
                                                                                                          ".obj")}


def robot_error(robot: str) -> str | None:
    """Why ``--robot ROBOT`` cannot be simulated (None: it can), for the commands that take it."""
    try:
        sim_arm(robot)
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return None


@functools.lru_cache(maxsize=8)
def sim_arm(robot: str | ArmDescription = "ivl_arm6") -> ArmDescription:
    """An arm the simulator can drive: its description follows our world's conventions (each arm joint on a
    position actuator, the gripper on one position actuator ``gripper_act`` (on the fingers' mean travel, or on a
    linkage's driven joint: :attr:`ArmDescription.opening_table`), finger bodies named ``finger*``, the tool site
    between the pads); ``ValueError`` naming what is missing."""
    import mujoco

    arm = load_arm(robot) if not isinstance(robot, ArmDescription) else robot
    arm.check()
    m = arm.load_model()
    driven = {int(m.actuator_trnid[i, 0]) for i in range(m.nu) if m.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT}
    missing = [j for j in arm.joint_names if m.joint(j).id not in driven]
    if missing or "gripper_act" not in {m.actuator(i).name for i in range(m.nu)} or not arm.gripper_joints:
        raise ValueError(f"arm {arm.name!r} is not ready for our simulator: it needs a position actuator on each arm "
                         f"joint (none on {missing}), a 'gripper_act' actuator and its gripper joints")
    return arm


@dataclass
class SimWorld:
    """Compiled scene with an arm (ours by default, any :func:`sim_arm`): MuJoCo model + data, and a lazily
    created offscreen renderer."""

    scene: SceneSpec
    arm: ArmDescription = ARM
    model: object = field(init=False)
    data: object = field(init=False)

    def __post_init__(self) -> None:
        _ensure_gl_backend()
        import mujoco

        self._mj = mujoco
        arm_file = Path(self.arm.description).name
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.scene, arm_file), assets=arm_assets(self.arm))
        self.data = mujoco.MjData(self.model)
        self._renderer = None
        m = self.model
        self.arm_qpos_adr = np.array([m.joint(j).qposadr[0] for j in self.arm.joint_names])
        self.arm_dof_adr = np.array([m.joint(j).dofadr[0] for j in self.arm.joint_names])
        by_joint = {int(m.actuator_trnid[i, 0]): i for i in range(m.nu)
                    if m.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT}
        self.arm_ctrl = np.array([by_joint[m.joint(j).id] for j in self.arm.joint_names])  # actuator per joint
        self.finger_qpos_adr = np.array([m.joint(j).qposadr[0] for j in self.arm.gripper_joints])
        self.finger_dof_adr = np.array([m.joint(j).dofadr[0] for j in self.arm.gripper_joints])
        self.gripper_act = m.actuator("gripper_act").id
        self.reset()

    # -- state --------------------------------------------------------------------------
    def reset(self) -> None:
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        self.data.qpos[self.arm_qpos_adr] = self.arm.home
        self.data.ctrl[self.arm_ctrl] = self.arm.home
        q_open = self.arm.gripper_position(self.arm.max_opening)  # each finger's, or the driven linkage joint's
        self.data.qpos[self.finger_qpos_adr] = q_open
        self.data.ctrl[self.gripper_act] = q_open
        mj.mj_forward(self.model, self.data)

    def step(self, n: int = 1) -> None:
        self._mj.mj_step(self.model, self.data, nstep=n)

    def steps_for(self, seconds: float) -> int:
        """Physics steps that make ``seconds`` of simulated time."""
        return int(seconds / float(self.model.opt.timestep))

    def settle(self) -> None:
        """Run :data:`SETTLE_S` of physics so a fresh scene's objects rest on the table."""
        self.step(self.steps_for(SETTLE_S))

    @property
    def time(self) -> float:
        return float(self.data.time)

    def arm_q(self) -> np.ndarray:
        return self.data.qpos[self.arm_qpos_adr].copy()

    def arm_qd(self) -> np.ndarray:
        return self.data.qvel[self.arm_dof_adr].copy()

    def gripper_opening(self) -> float:
        """Distance between the finger pads in metres (0 = closed)."""
        return self.arm.opening(self.data.qpos[self.finger_qpos_adr])

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def body_quat(self, name: str) -> np.ndarray:
        return self.data.body(name).xquat.copy()

    def tcp_pos(self) -> np.ndarray:
        return self.data.site(self.arm.tcp_site).xpos.copy()

    def touching(self, body: str, other_prefix: str = "finger") -> bool:
        """Whether ``body`` is in contact with any geom of a body whose name starts with the prefix."""
        m, d = self.model, self.data
        bid = m.body(body).id
        for i in range(d.ncon):
            b1 = m.geom_bodyid[d.contact[i].geom1]
            b2 = m.geom_bodyid[d.contact[i].geom2]
            if bid in (b1, b2):
                other = b2 if b1 == bid else b1
                if m.body(other).name.startswith(other_prefix):
                    return True
        return False

    # -- camera -------------------------------------------------------------------------
    def camera_info(self) -> CameraInfo:
        """Intrinsics + extrinsics of the RGB-D camera, as ``sensor_msgs/CameraInfo`` carries them."""
        cam = self.model.camera("rgbd")
        fovy = math.radians(float(cam.fovy[0]))
        f = 0.5 * IMAGE_H / math.tan(0.5 * fovy)
        k = np.array([[f, 0.0, IMAGE_W / 2.0], [0.0, f, IMAGE_H / 2.0], [0.0, 0.0, 1.0]])
        c = self.data.camera("rgbd")
        r_mj = c.xmat.reshape(3, 3)  # columns: camera x right, y up, z backwards (MuJoCo)
        t = np.eye(4)
        t[:3, :3] = r_mj @ np.diag([1.0, -1.0, -1.0])  # → optical frame: x right, y down, z forward
        t[:3, 3] = c.xpos
        return CameraInfo(width=IMAGE_W, height=IMAGE_H, k=k, t_base_camera=t,
                          frame_id="camera_color_optical_frame")

    def _get_renderer(self):
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, IMAGE_H, IMAGE_W)
        return self._renderer

    def render_rgb(self) -> np.ndarray:
        r = self._get_renderer()
        r.disable_depth_rendering()
        r.update_scene(self.data, camera="rgbd")
        return r.render().copy()  # [H, W, 3] uint8

    def render_depth(self) -> np.ndarray:
        """Depth in metres along the optical axis (MuJoCo's renderer linearises the z-buffer)."""
        r = self._get_renderer()
        r.enable_depth_rendering()
        r.update_scene(self.data, camera="rgbd")
        depth = r.render().astype(np.float32)  # [H, W] metres
        r.disable_depth_rendering()
        far = float(self.model.stat.extent * self.model.vis.map.zfar)
        depth[depth >= 0.999 * far] = 0.0  # no return → 0, as a depth camera reports it
        return depth

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
