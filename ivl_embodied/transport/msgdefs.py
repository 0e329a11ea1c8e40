"""Message definitions: our ``.msg`` files parsed by rosbags on top of ROS 2 Jazzy's types.

The ``.msg`` files in ``ivl_embodied_msgs/msg`` are the single source of truth. This module
finds them, parses them with rosbags' msg parser and registers them in a rosbags typestore that
already knows the ROS 2 Jazzy standard interfaces (std_msgs, builtin_interfaces, sensor_msgs,
geometry_msgs, trajectory_msgs, rosgraph_msgs, ...). Both transport backends and the byte-level
reference tests read field definitions from this one typestore.

Lookup order for the msg directory:

1. ``$IVL_EMBODIED_MSG_DIR`` (a directory of ``*.msg`` files);
2. the repository's ``ivl_embodied_msgs/msg`` next to the ``ivl_embodied`` package (source tree);
3. ``share/ivl_embodied/msg`` under ``sys.prefix`` (what ``setup.py`` installs) and under every
   prefix in ``$AMENT_PREFIX_PATH`` (also ``share/ivl_embodied_msgs/msg``, the colcon-built
   interface package).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ivl_embodied.resources import share_path

LOG = logging.getLogger(__name__)

MSG_PACKAGE = "ivl_embodied_msgs"
MSG_DIR_ENV = "IVL_EMBODIED_MSG_DIR"


class MessageDefinitionError(RuntimeError):
    """Our ``.msg`` files could not be found or parsed."""


def _candidate_dirs() -> list[Path]:
    out: list[Path] = []
    env = os.environ.get(MSG_DIR_ENV)
    if env:
        out.append(Path(env))
    try:
        out.append(share_path(f"{MSG_PACKAGE}/msg"))  # installed with the package, or the source tree
    except FileNotFoundError:
        pass
    prefixes = [sys.prefix] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in prefixes:
        out.append(Path(prefix) / "share" / "ivl_embodied" / "msg")
        out.append(Path(prefix) / "share" / MSG_PACKAGE / "msg")
    return out


def find_msg_dir() -> Path:
    """The directory holding ``ivl_embodied_msgs``' ``*.msg`` files (see module docstring)."""
    env = os.environ.get(MSG_DIR_ENV)
    if env and not any(Path(env).glob("*.msg")):
        raise MessageDefinitionError(f"${MSG_DIR_ENV}={env!r} holds no *.msg files")
    tried = _candidate_dirs()
    for d in tried:
        if d.is_dir() and any(d.glob("*.msg")):
            return d
    raise MessageDefinitionError(
        "cannot find the ivl_embodied_msgs .msg files; tried " + ", ".join(str(d) for d in tried)
        + f" (set ${MSG_DIR_ENV} to the directory holding them)"
    )


@functools.cache
def _typestore_for(msg_dir: str) -> Any:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for path in sorted(Path(msg_dir).glob("*.msg")):
        name = f"{MSG_PACKAGE}/msg/{path.stem}"
        try:
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        except Exception as exc:  # rosbags raises its own parse error types
            raise MessageDefinitionError(f"cannot parse {path}: {exc}") from exc
    store.register(types)
    LOG.debug("registered %d ivl_embodied_msgs types from %s", len(types), msg_dir)
    return store


def typestore() -> Any:
    """The rosbags typestore: ROS 2 Jazzy's interfaces plus ``ivl_embodied_msgs``."""
    return _typestore_for(str(find_msg_dir()))


def normalize_type_name(name: str) -> str:
    """``pkg/Name`` or ``pkg/msg/Name`` → ``pkg/msg/Name``; anything else raises ``ValueError``."""
    parts = name.split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and parts[1] == "msg" and parts[0] and parts[2]:
        return name
    raise ValueError(f"message type name must look like 'pkg/msg/Name', got {name!r}")


def field_defs(type_name: str) -> tuple[list[tuple[str, str, Any]], list[tuple[str, Any]]]:
    """``(constants, fields)`` of a message type as rosbags parsed them."""
    name = normalize_type_name(type_name)
    store = typestore()
    if name not in store.fielddefs:
        ours = sorted(k for k in store.fielddefs if k.startswith(MSG_PACKAGE + "/"))
        raise KeyError(f"unknown message type {type_name!r}; {MSG_PACKAGE} has {ours}")
    consts, fields = store.fielddefs[name]
    return list(consts), list(fields)


def our_type_names() -> list[str]:
    """All ``ivl_embodied_msgs`` type names, e.g. ``ivl_embodied_msgs/msg/ActionPlan``."""
    return sorted(k for k in typestore().fielddefs if k.startswith(MSG_PACKAGE + "/"))
