"""``make_node``: pick a backend by name, lazily importing only the chosen one.

Order: the ``backend`` argument, then ``$IVL_TRANSPORT`` (``cyclonedds`` | ``rclpy``), then
rclpy when it imports (a ROS 2 machine), else cyclonedds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ivl_embodied.transport.interface import TransportNode
from ivl_embodied.transport.naming import NodeNames

LOG = logging.getLogger(__name__)
BACKENDS = ("cyclonedds", "rclpy")
CONFIG_DIR = Path(__file__).resolve().parent / "cyclonedds"


def choose_backend(backend: str | None = None) -> str:
    name = backend or os.environ.get("IVL_TRANSPORT", "").strip() or None
    if name is None:
        try:
            import rclpy  # noqa: F401  (a ROS 2 machine: use the native client library)
        except ImportError:
            return "cyclonedds"
        return "rclpy"
    if name not in BACKENDS:
        raise ValueError(f"unknown transport backend {name!r}; choose one of {BACKENDS} (IVL_TRANSPORT)")
    return name


def make_node(name: str, backend: str | None = None, parameters: dict[str, Any] | None = None,
              domain_id: int | None = None, names: NodeNames | None = None, rosout: bool = True) -> TransportNode:
    """A node named ``name`` on the chosen backend with parameter overrides ``parameters``;
    ``names`` carries its namespace and remaps (``--ros-args -r``), ``rosout`` whether its log
    records also go to ``/rosout``."""
    chosen = choose_backend(backend)
    names = names or NodeNames(name)
    LOG.debug("node %s on backend %s", names.fully_qualified_name, chosen)
    if chosen == "rclpy":
        from ivl_embodied.transport.rclpy_backend import RclpyNode

        if domain_id is not None:
            raise ValueError("the rclpy backend takes its domain from ROS_DOMAIN_ID, not domain_id")
        return RclpyNode(name, parameters, names, rosout=rosout)
    from ivl_embodied.transport.cyclone_backend import CycloneNode

    return CycloneNode(name, parameters, domain_id=domain_id, names=names, rosout=rosout)


def cyclone_config_uri(profile: str = "loopback") -> str:
    """``file://`` URI of a shipped Cyclone DDS config (for ``CYCLONEDDS_URI``)."""
    path = CONFIG_DIR / f"{profile}.xml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.xml"))
        raise ValueError(f"no Cyclone DDS config {profile!r}; shipped: {known}")
    return path.as_uri()
