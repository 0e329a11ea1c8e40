"""Files the package reads at run time that live in the repository's top-level folders.

``launch/graph.yaml``, ``config/*.yaml`` and ``ivl_embodied_msgs/msg/*.msg`` sit at the top of the
repository, where ROS 2 conventions put them. An installed package (a wheel, ``pip install``
without ``-e``, a colcon build) carries copies of them inside the package, under ``_share/``, put
there by ``setup.py``; a source checkout reads them where they are. The simulator's MJCF and task
files are package data of ``ivl_embodied.sim`` itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHARED = ("launch/graph.yaml", "config/ivl_embodied.yaml", "config/robots", "ivl_embodied_msgs/msg")
"""What ``setup.py`` copies into the package, as paths relative to the repository root."""


def share_path(relative: str) -> Path:
    """The file or folder ``relative`` (one of :data:`SHARED` or inside one), installed or in the
    source tree; raises ``FileNotFoundError`` naming both places."""
    installed = Path(str(resources.files("ivl_embodied"))) / "_share" / relative
    if installed.exists():
        return installed
    source = Path(__file__).resolve().parent.parent / relative
    if source.exists():
        return source
    raise FileNotFoundError(f"{relative!r} is neither in the installed package ({installed}) nor in a "
                            f"source checkout ({source})")
