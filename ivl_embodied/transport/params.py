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

from ivl_embodied.transport.naming import NodeNames, Remap, validate_namespace, validate_node_name

WILDCARDS = ("/**", "**")


class ParameterFileError(ValueError):
    """A parameter file or ``--ros-args`` option that cannot be used; names file and key."""


LOG_LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}
FLAGS = ("--enable-rosout-logs", "--disable-rosout-logs", "--enable-stdout-logs", "--disable-stdout-logs",
         "--enable-external-lib-logs", "--disable-external-lib-logs")


@dataclass(frozen=True)
class RosArgs:
    """What ``--ros-args`` said: parameter files, ``-p`` overrides, remaps, node name, namespace,
    log levels, logging switches, and everything outside ``--ros-args``."""

    params_files: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    remaining: tuple[str, ...] = ()
    remaps: tuple[Remap, ...] = ()
    """Topic remaps, in the order given (the first matching one applies)."""
    node_renames: tuple[Remap, ...] = ()
    """``__node:=``/``__name:=`` (source ``__node``) and ``__ns:=`` (source ``__ns``) rules."""
    log_levels: dict[str, int] = field(default_factory=dict)
    """Logger name ('' for the node's own and every other) → ``logging`` level."""
    enclave: str | None = None
    rosout_logs: bool = True
    stdout_logs: bool = True

    def node_names(self, default_name: str) -> NodeNames:
        """The node's name, namespace and remaps as the arguments say (for a node first called ``default_name``)."""
        name, namespace = default_name, "/"
        for rule in self.node_renames:  # later rules win, as in rcl
            if rule.node not in (None, default_name):
                continue
            if rule.source == "__ns":
                namespace = rule.target
            else:
                name = rule.target
        return NodeNames(name, namespace, tuple(r for r in self.remaps if r.node in (None, default_name, name)))


def _parse_remap(value: str, flag: str) -> Remap:
    rule, sep, target = value.partition(":=")
    node, colon, source = rule.rpartition(":")
    if not sep or not source or not target or (colon and not node):
        raise ParameterFileError(f"{flag} {value!r}: expected [node_name:]from:=to")
    return Remap(source, target, node or None)


def _parse_log_level(value: str) -> tuple[str, int]:
    name, sep, level = value.rpartition(":=")
    if not sep:
        name, level = "", value
    if level.lower() not in LOG_LEVELS:
        raise ParameterFileError(f"--log-level {value!r}: level must be one of {sorted(set(LOG_LEVELS))}")
    return name, LOG_LEVELS[level.lower()]


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


def _node_matches(section: str, node_name: str, namespace: str = "/") -> bool:
    """Whether a YAML section key addresses the node: ``/**``, ``name``, ``/**/name``, ``/ns/name``."""
    key = section.strip()
    if key in WILDCARDS:
        return True
    if key.startswith("/**/"):
        return key[4:] == node_name
    if key.startswith("/") and key.count("/") > 1:
        return key == namespace.rstrip("/") + "/" + node_name
    return key.lstrip("/") == node_name


def load_params_file(path: str | Path, node_name: str, namespace: str = "/") -> dict[str, Any]:
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
        if not _node_matches(section, node_name, namespace):
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
    """Split ``argv`` into ROS arguments (``--ros-args ... [--]``) and the rest.

    Understood: ``-p/--param``, ``--params-file``, ``-r/--remap`` (topics, ``__node``/``__name``,
    ``__ns``), ``--log-level [logger:=]level``, ``-e/--enclave``, and the ``--enable-``/``--disable-``
    ``rosout-logs``/``stdout-logs``/``external-lib-logs`` switches. Anything else inside ``--ros-args``
    raises :class:`ParameterFileError` naming it: nothing is silently dropped."""
    files: list[str] = []
    overrides: dict[str, Any] = {}
    rest: list[str] = []
    remaps: list[Remap] = []
    renames: list[Remap] = []
    levels: dict[str, int] = {}
    enclave = None
    switches = {"rosout": True, "stdout": True}
    i, in_ros = 0, False
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a == "--ros-args":
            in_ros = True
        elif in_ros and a == "--":
            in_ros = False
        elif in_ros and a in FLAGS:
            what = a.split("-")[-2]  # rosout | stdout | lib
            if what in switches:
                switches[what] = a.startswith("--enable")
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
            elif a in ("-r", "--remap"):
                rule = _parse_remap(value, a)
                if rule.source in ("__node", "__name", "__ns"):
                    renames.append(Remap("__ns" if rule.source == "__ns" else "__node", rule.target, rule.node))
                elif rule.source.startswith("__"):
                    raise ParameterFileError(f"{a} {value!r}: unknown special name {rule.source!r} "
                                             "(supported: __node, __name, __ns)")
                else:
                    remaps.append(rule)
            elif a == "--log-level":
                name, level = _parse_log_level(value)
                levels[name] = level
            else:
                enclave = value
            i += 1
        elif in_ros:
            raise ParameterFileError(
                f"unknown ROS argument {a!r} (supported: -p, --params-file, -r, --log-level, -e, {', '.join(FLAGS)})")
        else:
            rest.append(a)
        i += 1
    for rule in renames:  # validate now, not when the node starts
        try:
            (validate_namespace if rule.source == "__ns" else validate_node_name)(rule.target)
        except ValueError as exc:
            raise ParameterFileError(f"-r {rule.source}:={rule.target}: {exc}") from None
    return RosArgs(tuple(files), overrides, tuple(rest), tuple(remaps), tuple(renames), levels, enclave,
                   switches["rosout"], switches["stdout"])


def resolve_parameters(node_name: str, argv: list[str] | tuple[str, ...] = (),
                       params_files: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], RosArgs]:
    """Overrides for ``node_name``: ``params_files``, then ``--params-file``s, then ``-p``."""
    ros = parse_ros_args(argv)
    names = ros.node_names(node_name)  # sections address the node by its name after -r __node:=
    params: dict[str, Any] = {}
    for f in list(params_files) + list(ros.params_files):  # per file: wildcard, then node (rclcpp)
        params.update(load_params_file(f, names.name, names.namespace))
    params.update(ros.overrides)
    return params, ros
