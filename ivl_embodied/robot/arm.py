"""An arm as the executor knows it: read from its description, never from a simulator.

:class:`ArmDescription` names the description file (MJCF, or URDF, which MuJoCo compiles too),
the arm's joints in command order, the tool-centre-point site and the home pose. Joint limits
come from the description itself, so the IK, the safety limits and the controller agree.
"""

from __future__ import annotations

import functools
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

    def __post_init__(self) -> None:
        if not self.joint_names:
            raise ValueError(f"arm {self.name!r}: no joint names")
        if len(self.home) != len(self.joint_names):
            raise ValueError(f"arm {self.name!r}: home {self.home!r} has {len(self.home)} values for "
                             f"{len(self.joint_names)} joints")
        if not Path(self.description).is_file():
            raise FileNotFoundError(f"arm {self.name!r}: description {str(self.description)!r} does not exist")

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
