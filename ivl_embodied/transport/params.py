"""ROS 2 parameters without ROS: parameter YAML files and ``--ros-args`` parsing.

File format (what ``ros2 run ... --ros-args --params-file F`` reads)::

    /**:                      # every node
      ros__parameters:
        use_sim_time: false
    planner_node:             # one node (also "/planner_node" or "/ns/planner_node")
      ros__parameters:
        max_new_tokens: 96
        camera: {topic: /camera/color/image_raw}   # nested keys flatten to "camera.topic"

Precedence, lowest first: wildcard sections, per-node sections (in file order, later files
after earlier ones), then ``-p name:=value`` on the command line. Values are YAML-typed as in
ROS 2 (``-p rate:=5`` is an int, ``-p rate:=5.0`` a float, ``-p name:=cam`` a string); allowed
types are bool, int, float, str and homogeneous lists of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WILDCARDS = ("/**", "**")


class ParameterFileError(ValueError):
    """A parameter file or ``--ros-args`` option that cannot be used; names file and key."""


@dataclass(frozen=True)
class RosArgs:
    """What ``--ros-args`` said: parameter files, ``-p`` overrides, and everything else."""

    params_files: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    remaining: tuple[str, ...] = ()


def _check_value(value: Any, where: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        kinds = {bool if isinstance(v, bool) else type(v) for v in value}
        if not kinds <= {bool, int, float, str}:
            raise ParameterFileError(f"{where}: list items must be bool/int/float/str, got {value!r}")
        if len(kinds) > 1 and kinds != {int, float}:
            raise ParameterFileError(f"{where}: list mixes types {sorted(k.__name__ for k in kinds)}: {value!r}")
        return [float(v) for v in value] if kinds == {int, float} else value
    raise ParameterFileError(f"{where}: unsupported parameter value {value!r} ({type(value).__name__})")


def _flatten(params: Any, where: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ParameterFileError(f"{where}: 'ros__parameters' must be a mapping, got {params!r}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, where, name + "."))
        else:
            out[name] = _check_value(value, f"{where}: parameter {name!r}")
    return out


def _node_matches(section: str, node_name: str) -> bool:
    """Whether a YAML section key addresses ``node_name`` (without namespace support beyond '/')."""
    key = section.strip()
    if key in WILDCARDS:
        return True
    if key.startswith("/**/"):
        key = key[4:]
    return key.lstrip("/") == node_name


def load_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """Parameters for ``node_name`` from one ROS 2 parameter YAML file (wildcard, then node)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterFileError(f"cannot read parameter file {str(p)!r}: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParameterFileError(f"{p}: not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ParameterFileError(f"{p}: top level must map node names to 'ros__parameters', got {type(doc).__name__}")
    wildcard: dict[str, Any] = {}
    specific: dict[str, Any] = {}
    for section, body in doc.items():
        where = f"{p}: section {section!r}"
        if not isinstance(section, str):
            raise ParameterFileError(f"{where}: node names must be strings")
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ParameterFileError(f"{where}: expected a 'ros__parameters:' mapping, got {body!r}")
        extra = sorted(set(body) - {"ros__parameters"})
        if extra:
            raise ParameterFileError(f"{where}: unexpected keys {extra} next to 'ros__parameters'")
        if not _node_matches(section, node_name):
            continue
        params = _flatten(body["ros__parameters"] or {}, where)
        (wildcard if section.strip() in WILDCARDS else specific).update(params)
    return {**wildcard, **specific}


def _parse_value(text: str, where: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if value is None:
        raise ParameterFileError(f"{where}: empty/null value is not a parameter value")
    return _check_value(value, where)


def parse_ros_args(argv: list[str] | tuple[str, ...]) -> RosArgs:
    """Split ``argv`` into ROS arguments (``--ros-args ... [--]``) and the rest."""
    files: list[str] = []
    overrides: dict[str, Any] = {}
    rest: list[str] = []
    i, in_ros = 0, False
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a == "--ros-args":
            in_ros = True
        elif in_ros and a == "--":
            in_ros = False
        elif in_ros and a in ("-p", "--param", "--params-file", "-r", "--remap", "--log-level", "-e", "--enclave"):
            if i + 1 >= len(argv):
                raise ParameterFileError(f"{a} needs a value")
            value = argv[i + 1]
            if a in ("-p", "--param"):
                name, sep, raw = value.partition(":=")
                if not sep or not name:
                    raise ParameterFileError(f"{a} {value!r}: expected name:=value")
                overrides[name] = _parse_value(raw, f"{a} {value!r}")
            elif a == "--params-file":
                files.append(value)
            # remaps, log level and enclave are accepted and ignored (no remapping yet)
            i += 1
        elif in_ros:
            raise ParameterFileError(f"unknown ROS argument {a!r} (supported: -p, --params-file)")
        else:
            rest.append(a)
        i += 1
    return RosArgs(tuple(files), overrides, tuple(rest))


def resolve_parameters(node_name: str, argv: list[str] | tuple[str, ...] = (),
                       params_files: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], RosArgs]:
    """Overrides for ``node_name``: ``params_files``, then ``--params-file``s, then ``-p``."""
    ros = parse_ros_args(argv)
    params: dict[str, Any] = {}
    for f in list(params_files) + list(ros.params_files):  # per file: wildcard, then node (rclcpp)
        params.update(load_params_file(f, node_name))
    params.update(ros.overrides)
    return params, ros
