"""An arm as the executor knows it: read from its description, never from a simulator.

:class:`ArmDescription` names the description file (MJCF, or URDF, which MuJoCo compiles too),
the arm's joints in command order, the tool-centre-point site, the home pose and the gripper's facts.
Joint limits come from the description itself, so the IK, the safety limits and the controller agree.
:func:`load_arm` reads one from its per-arm file, ``config/robots/NAME.yaml``: nothing in ``robot/``
knows which arm it drives.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ivl_embodied.robot.trajectory import TrajectoryLimits


@dataclass(frozen=True)
class ArmDescription:
    name: str
    description: Path  # MJCF or URDF of the arm alone
    joint_names: tuple[str, ...]
    home: tuple[float, ...]  # rad, in joint_names order
    tcp_site: str = "tcp"
    gripper_joints: tuple[str, ...] = ()  # as /joint_states reports them: fingers' travel (m) or a driven linkage joint
    max_opening: float = 0.08  # m between the fingers, fully open
    tip_below_tcp: float = 0.015  # m from the tool centre point down to the fingertips
    push_yaw: float = math.pi / 2  # rad from the push direction to the tool's x axis (pi/2: the fingers in line)
    push_lean: float = 0.0  # rad the tool leans into a push, fingertips first (a wide hand close above them)
    urdf_tool: tuple = ()  # (link, (x, y, z)): the tool frame in a URDF description, which has no sites
    # a linkage gripper (one driven joint, e.g. a Robotiq 2F-85's knuckle in rad): (joint position, opening in m)
    # points, opening falling as the joint rises, interpolated linearly. Empty: each gripper joint is a
    # finger's travel in m and the opening is their sum (a parallel-jaw hand like the Panda's).
    opening_table: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.joint_names:
            raise ValueError(f"arm {self.name!r}: no joint names")
        if len(self.home) != len(self.joint_names):
            raise ValueError(f"arm {self.name!r}: home {self.home!r} has {len(self.home)} values for "
                             f"{len(self.joint_names)} joints")
        if not Path(self.description).is_file():
            raise FileNotFoundError(f"arm {self.name!r}: description {str(self.description)!r} does not exist")
        if not -math.pi <= self.push_yaw <= math.pi or not 0 <= self.push_lean <= 1.0:
            raise ValueError(f"arm {self.name!r}: push_yaw must be in [-pi, pi] and push_lean in [0, 1] rad, got "
                             f"{self.push_yaw!r}, {self.push_lean!r}")
        if self.opening_table:
            q, w = np.array(self.opening_table, float).T
            if len(self.gripper_joints) != 1 or len(q) < 2 or np.any(np.diff(q) <= 0) or np.any(np.diff(w) >= 0):
                raise ValueError(f"arm {self.name!r}: an opening table is for one driven gripper joint, with at least "
                                 f"two points, joint positions rising and openings falling; got "
                                 f"{len(self.gripper_joints)} joint(s) and {self.opening_table!r}")
            if not w[-1] <= self.max_opening <= w[0] + 1e-3:
                raise ValueError(f"arm {self.name!r}: max_opening {self.max_opening!r} m is outside the opening "
                                 f"table's {w[-1]:.4f}..{w[0]:.4f} m")
        for key in ("max_opening", "tip_below_tcp"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 0.5:
                raise ValueError(f"arm {self.name!r}: {key} must be a length in m in (0, 0.5), got {v!r}")

    def opening(self, positions) -> float:
        """The distance between the fingers in m, from the gripper joints' positions (``gripper_joints`` order)."""
        if self.opening_table:
            q, w = np.array(self.opening_table, float).T
            return float(max(np.interp(float(positions[0]), q, w), 0.0))
        return float(sum(positions))

    def gripper_position(self, opening: float) -> float:
        """The driven gripper joint's position (each finger's, for a parallel-jaw hand) for ``opening`` m,
        clipped to 0..max_opening."""
        opening = float(np.clip(opening, 0.0, self.max_opening))
        if self.opening_table:
            q, w = np.array(self.opening_table, float).T
            return float(np.interp(opening, w[::-1], q[::-1]))
        return opening / max(len(self.gripper_joints), 1)

    def check(self) -> None:
        """Compile the description and check that it has every joint and the tool frame this names;
        raises ``ValueError`` naming what is missing."""
        m = self.load_model()
        joints = {m.joint(i).name for i in range(m.njnt)}
        missing = [j for j in self.joint_names + self.gripper_joints if j not in joints]
        if missing:
            raise ValueError(f"arm {self.name!r}: {self.description} has no joint {missing} (it has {sorted(joints)})")
        sites = {m.site(i).name for i in range(m.nsite)}
        if self.tcp_site not in sites:
            raise ValueError(f"arm {self.name!r}: {self.description} has no tool frame {self.tcp_site!r} "
                             f"(sites: {sorted(sites)})")

    def load_model(self):
        """The compiled MuJoCo model of the arm alone."""
        import mujoco

        return mujoco.MjModel.from_xml_path(str(self.description))

    @property
    def joint_limits(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(lower, upper) position limits in rad, from the description."""
        return _joint_limits(str(self.description), self.joint_names)

    def trajectory_limits(self, **overrides) -> TrajectoryLimits:
        """:class:`TrajectoryLimits` with this arm's joint range; speed etc. from ``overrides``."""
        lower, upper = self.joint_limits
        return replace(TrajectoryLimits(**overrides), joint_lower=lower, joint_upper=upper)


ROBOT_KEYS = {"name", "description", "joints", "tool_frame", "home", "gripper", "urdf_tool"}
GRIPPER_KEYS = {"joints", "max_opening", "tip_below_tcp", "push_yaw", "push_lean", "opening_table"}


def robot_configs() -> dict[str, Path]:
    """The arms shipped in ``config/robots/``, by name."""
    from ivl_embodied.resources import share_path

    return {p.stem: p for p in sorted(share_path("config/robots").glob("*.yaml"))}


def load_arm(robot: str | Path) -> ArmDescription:
    """The arm ``robot`` names: a file of ``config/robots/`` by name (``"ivl_arm6"``), or a YAML file of the
    same form. A description path is relative to the ``ivl_embodied`` package, or absolute. Raises
    ``ValueError`` / ``FileNotFoundError`` naming the file and the key or value that is wrong."""
    from importlib import resources

    import yaml

    path = Path(robot)
    if path.suffix not in (".yaml", ".yml"):
        known = robot_configs()
        if str(robot) not in known:
            raise ValueError(f"no robot {str(robot)!r}: the shipped ones are {sorted(known)} (or give a YAML file)")
        path = known[str(robot)]
    if not path.is_file():
        raise FileNotFoundError(f"no robot file {str(path)!r}")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: a robot file is a mapping of {sorted(ROBOT_KEYS)}, got {type(cfg).__name__}")
    unknown = set(cfg) - ROBOT_KEYS
    missing = {"name", "description", "joints", "tool_frame", "home"} - set(cfg)
    if unknown or missing:
        why = [f"unknown keys {sorted(unknown)}"] if unknown else []
        raise ValueError(f"{path}: " + "; ".join(why + ([f"missing {sorted(missing)}"] if missing else [])))
    grip = cfg.get("gripper") or {}
    if not isinstance(grip, dict) or set(grip) - GRIPPER_KEYS:
        raise ValueError(f"{path}: gripper takes {sorted(GRIPPER_KEYS)}, got {grip!r}")
    description = Path(cfg["description"])
    if not description.is_absolute():
        description = Path(str(resources.files("ivl_embodied"))) / description
    try:
        return ArmDescription(
            str(cfg["name"]), description, tuple(str(j) for j in cfg["joints"]),
            tuple(float(q) for q in cfg["home"]), tcp_site=str(cfg["tool_frame"]),
            gripper_joints=tuple(str(j) for j in grip.get("joints", ())),
            urdf_tool=_urdf_tool(cfg.get("urdf_tool")),
            opening_table=tuple((float(q), float(w)) for q, w in grip.get("opening_table", ())),
            **{k: grip[k] for k in ("max_opening", "tip_below_tcp", "push_yaw", "push_lean") if k in grip})
    except (TypeError, ValueError, FileNotFoundError) as e:
        raise type(e)(f"{path}: {e}") from None


def _urdf_tool(value) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, dict) or set(value) != {"link", "offset"} or len(value["offset"]) != 3:
        raise ValueError(f"urdf_tool is {{link: NAME, offset: [x, y, z]}}, got {value!r}")
    return str(value["link"]), tuple(float(v) for v in value["offset"])


def arm_from_urdf(urdf: str, arm: ArmDescription, folder: Path) -> ArmDescription:
    """``arm`` described by ``urdf`` instead (what ``robot_state_publisher`` publishes on ``/robot_description``):
    its kinematics and joint limits from the URDF, meshes left out (the IK needs none; a URDF's ``package://``
    meshes are not on this machine), the tool site where the robot file's ``urdf_tool`` puts it. The compiled
    description is written to ``folder``; ``ValueError`` names what the URDF lacks."""
    import xml.etree.ElementTree as ET

    import mujoco

    if not arm.urdf_tool:
        raise ValueError(f"arm {arm.name!r}: its robot file has no urdf_tool (the tool frame in a URDF)")
    try:
        robot = ET.fromstring(urdf)
    except ET.ParseError as e:
        raise ValueError(f"the robot description is not XML: {e}") from None
    if robot.tag != "robot":
        raise ValueError(f"the robot description is not a URDF (its root is <{robot.tag}>, not <robot>)")
    for link in robot.iter("link"):
        for tag in ("visual", "collision"):
            for e in link.findall(tag):
                link.remove(e)
    try:
        spec = mujoco.MjSpec.from_string(ET.tostring(robot, encoding="unicode"))
    except Exception as e:  # MuJoCo's parser: say which description
        raise ValueError(f"the robot description does not compile: {e}") from None
    link, offset = arm.urdf_tool
    body = spec.body(link)
    if body is None:
        raise ValueError(f"the robot description has no link {link!r} for the tool frame")
    site = body.add_site()
    site.name, site.pos = "tcp", list(offset)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arm.name}_from_urdf.xml"
    path.write_text(spec.to_xml())
    described = replace(arm, description=path, tcp_site="tcp")
    described.check()
    return described


@functools.lru_cache(maxsize=8)
def _joint_limits(path: str, joints: tuple[str, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    import mujoco

    m = mujoco.MjModel.from_xml_path(path)
    ids = [m.joint(j).id for j in joints]
    if not all(m.jnt_limited[i] for i in ids):
        raise ValueError(f"{path}: every arm joint needs a range; unlimited: "
                         f"{[j for j, i in zip(joints, ids, strict=True) if not m.jnt_limited[i]]}")
    rng = np.asarray(m.jnt_range)[ids]
    return tuple(map(float, rng[:, 0])), tuple(map(float, rng[:, 1]))
