"""``ivl-embodied launch``: start the node graph without ROS 2.

Reads the same ``launch/graph.yaml`` as the ROS 2 launch files, starts each node of the
chosen groups as its own process (``python -m MODULE --ros-args -r __node:=NAME
--params-file FILE``), prefixes their output with the node's name, and supervises them:

* SIGINT/SIGTERM to the launcher is passed on to every node as SIGINT; a node still
  running after ``--grace`` seconds gets SIGTERM, then SIGKILL.
* A node with ``respawn: true`` in the graph (as ROS 2 launch's ``Node(respawn=True,
  respawn_delay=...)``) that exits on its own is reported with its exit code and started
  again after ``respawn_delay`` seconds; the others keep running.
* A node without it that exits on its own is reported with its exit code, and the launcher
  then shuts the graph down and exits non-zero: a half-running stack is worse than a
  stopped one.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ivl_embodied.resources import share_path

log = logging.getLogger("ivl_embodied.launcher")



@dataclass(frozen=True)
class NodeSpec:
    name: str
    module: str
    group: str
    respawn: bool = False  # start it again when it exits on its own
    respawn_delay: float = 2.0  # s
    params: tuple[str, ...] = ()  # NAME:=VALUE overrides for this node alone (after the graph-wide ones)

    def __post_init__(self) -> None:
        for attr in ("name", "module", "group"):
            v = getattr(self, attr)
            if not isinstance(v, str) or not v:
                raise ValueError(f"graph node field {attr!r} must be a non-empty string, got {v!r}")
        if not isinstance(self.respawn, bool):
            raise ValueError(f"graph node {self.name!r}: respawn must be true or false, got {self.respawn!r}")
        if isinstance(self.respawn_delay, bool) or not isinstance(self.respawn_delay, (int, float)) \
                or not 0 <= self.respawn_delay <= 600:
            raise ValueError(f"graph node {self.name!r}: respawn_delay must be 0..600 s, got {self.respawn_delay!r}")
        if isinstance(self.params, list):  # from YAML
            object.__setattr__(self, "params", tuple(self.params))
        if not isinstance(self.params, tuple) or not all(isinstance(o, str) and ":=" in o for o in self.params):
            raise ValueError(f"graph node {self.name!r}: params must be NAME:=VALUE strings, got {self.params!r}")


@dataclass(frozen=True)
class Graph:
    params_file: Path
    nodes: tuple[NodeSpec, ...] = field(default_factory=tuple)

    def select(self, groups: list[str] | None) -> list[NodeSpec]:
        if not groups:
            return list(self.nodes)
        known = {n.group for n in self.nodes}
        unknown = sorted(set(groups) - known)
        if unknown:
            raise ValueError(f"unknown group(s) {unknown}; the graph has {sorted(known)}")
        return [n for n in self.nodes if n.group in groups]


def load_graph(path: Path | None = None) -> Graph:
    """The graph in ``path`` (default: the package's ``launch/graph.yaml``). A relative
    ``params_file`` is looked up in ``config/`` beside the graph's folder, else in the package's."""
    path = Path(path) if path else share_path("launch/graph.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read launch graph {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise ValueError(f"launch graph {path} needs a 'nodes' list, got {data!r}")
    nodes = []
    for i, n in enumerate(data["nodes"]):
        if not isinstance(n, dict):
            raise ValueError(f"launch graph {path}: node #{i} must be a mapping, got {n!r}")
        nodes.append(NodeSpec(name=n.get("name"), module=n.get("module"), group=n.get("group"),
                              respawn=n.get("respawn", False), respawn_delay=n.get("respawn_delay", 2.0)))
    params = Path(data.get("params_file", "ivl_embodied.yaml"))
    if not params.is_absolute():
        beside = path.parent.parent / "config" / params
        params = beside.resolve() if beside.is_file() else share_path(f"config/{params}")
    return Graph(params_file=params, nodes=tuple(nodes))


def loopback_env() -> dict[str, str]:
    """This process's environment for a graph of its own on this machine: loopback-only Cyclone DDS on a
    domain of its own (unless the environment already says), unbuffered output."""
    from ivl_embodied.transport.factory import cyclone_config_uri

    env = dict(os.environ)
    env.setdefault("CYCLONEDDS_URI", cyclone_config_uri("loopback"))
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    env.setdefault("IVL_TRANSPORT", "cyclonedds")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """One node in its own process; its output is copied to ``out`` (ours), prefixed with its name."""

    def __init__(self, spec: NodeSpec, argv: list[str], env: dict[str, str], out=None):
        self.spec = spec
        self.out = out
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,  # our SIGINT handling, not the terminal's, reaches it
        )
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        out = self.out or sys.stdout
        for line in self.popen.stdout:
            out.write(f"[{self.spec.name}] {line}")
            out.flush()


def node_argv(spec: NodeSpec, params_file: Path, overrides: list[str]) -> list[str]:
    argv = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    argv += ["--params-file", str(params_file)]
    for o in [*overrides, *spec.params]:
        argv += ["-p", o]
    return argv


RECORDER_MODULE = "ivl_embodied.nodes.recorder_node"


def recorder_spec(output: Path) -> NodeSpec:
    """The recorder node writing the graph's topics to ``output`` (an .mcap file; ``ValueError`` otherwise)."""
    from ivl_embodied.transport.mcap_io import recording_path

    return NodeSpec("recorder_node", RECORDER_MODULE, "workstation",
                    params=(f"output:={recording_path(output).resolve()}",))


CONSOLE_MODULE = "ivl_embodied.nodes.console_node"


def console_spec(port: int) -> NodeSpec:
    """The operator console node serving its page on 127.0.0.1:``port`` (0: any free port; its URL, with a
    fresh token, is printed when it starts)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"the console's port must be 0..65535, got {port!r}")
    return NodeSpec("console_node", CONSOLE_MODULE, "workstation", params=(f"port:={port}",))


SIM_MODULE = "ivl_embodied.nodes.sim_node"
ROBOT_MODULES = (SIM_MODULE, "ivl_embodied.nodes.executor_node")


def robot_error(robot: str, simulated: bool) -> str | None:
    """Why ``--robot ROBOT`` cannot be launched (None: it can): its file and description, and, when the graph holds
    our simulator, whether the simulator can drive it (the check ``demo`` and ``sim-eval`` make)."""
    if simulated:
        from ivl_embodied.sim.world import robot_error as sim_robot_error

        return sim_robot_error(robot)
    from ivl_embodied.robot.arm import load_arm

    try:
        load_arm(robot).check()
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return None


def with_robot(specs: list[NodeSpec], robot: str) -> list[NodeSpec]:
    """``specs`` with ``robot:=ROBOT`` for the nodes that drive or simulate the arm (and only those)."""
    from dataclasses import replace

    return [replace(s, params=(*s.params, f"robot:={robot}")) if s.module in ROBOT_MODULES else s for s in specs]
PLACEMENT_ENV = "IVL_THREADS_BY_PLACEMENT"


def with_sim_time(specs: list[NodeSpec], overrides: list[str]) -> list[str]:
    """``overrides`` plus ``use_sim_time:=true`` when the graph runs our simulator (its ``/clock`` is
    the graph's time) and the user did not set ``use_sim_time`` themselves."""
    if any(s.module == SIM_MODULE for s in specs) and not any(o.startswith("use_sim_time:=") for o in overrides):
        return ["use_sim_time:=true", *overrides]
    return list(overrides)


def placement_envs(specs: list[NodeSpec], env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each node's environment: ``env`` plus its share of this machine's cores (``runtime.threads``),
    so co-located nodes do not each size their thread pools to every core. Logged."""
    from ivl_embodied.runtime.threads import available_cores, describe, share_env, shares

    cores = available_cores()
    if os.environ.get(PLACEMENT_ENV, "1") == "0":  # for A/B benchmarks: every node sizes itself to every core
        assigned = {s.name: cores for s in specs}
        log.warning("threads by placement off (%s=0): %s", PLACEMENT_ENV, describe(assigned, cores))
    else:
        assigned = shares([s.name for s in specs], cores)
        log.info("threads by placement: %s (a node's `threads` parameter overrides)", describe(assigned, cores))
    return {s.name: {**env, **share_env(assigned[s.name])} for s in specs}


def run_graph(
    specs: list[NodeSpec],
    params_file: Path,
    overrides: list[str] | None = None,
    grace_s: float = 5.0,
    duration_s: float | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run nodes until a signal, a node's exit, or ``duration_s``; return an exit code."""
    if not specs:
        raise ValueError("no nodes to launch")
    if not params_file.is_file():
        raise FileNotFoundError(f"parameter file {params_file} does not exist")
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    overrides = with_sim_time(specs, overrides or [])
    node_envs = placement_envs(specs, env)
    if overrides[:1] == ["use_sim_time:=true"]:
        log.info("the simulator is in the graph: every node takes its time from /clock (use_sim_time:=true)")
    stop = threading.Event()
    reason: list[str] = []

    def on_signal(signum, _frame):
        reason.append(signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[NodeProcess] = []
    respawn_at: dict[int, float] = {}  # index in procs -> monotonic time to start it again
    restarts: dict[str, int] = {}
    rc = 0
    try:
        for spec in specs:
            procs.append(NodeProcess(spec, node_argv(spec, params_file, overrides), node_envs[spec.name]))
            log.info("started %s (pid %d)", spec.name, procs[-1].popen.pid)
        t_end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set():
            for i, p in enumerate(procs):
                if i in respawn_at:
                    if time.monotonic() >= respawn_at[i]:
                        del respawn_at[i]
                        argv = node_argv(p.spec, params_file, overrides)
                        procs[i] = NodeProcess(p.spec, argv, node_envs[p.spec.name])
                        restarts[p.spec.name] = restarts.get(p.spec.name, 0) + 1
                        log.warning("respawned %s (pid %d, restart %d)", p.spec.name, procs[i].popen.pid,
                                    restarts[p.spec.name])
                    continue
                code = p.popen.poll()
                if code is None:
                    continue
                if p.spec.respawn:
                    log.error("node %s exited with code %d; respawning it in %.1f s", p.spec.name, code,
                              p.spec.respawn_delay)
                    respawn_at[i] = time.monotonic() + p.spec.respawn_delay
                else:
                    log.error("node %s exited with code %d; shutting the graph down", p.spec.name, code)
                    rc = code or 1
                    stop.set()
            if t_end is not None and time.monotonic() >= t_end:
                stop.set()
            stop.wait(0.1)
        if reason:
            log.info("received %s; stopping %d nodes", reason[0], len(procs))
    finally:
        stop_nodes(procs, grace_s)
        for s, h in old.items():
            signal.signal(s, h)
    return rc


def stop_nodes(procs: list[NodeProcess], grace_s: float = 5.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, each after ``grace_s`` seconds."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.popen.poll() is None]
        if not alive:
            break
        for p in alive:
            try:
                os.killpg(p.popen.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for p in alive:
            try:
                p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("node %s did not stop on %s", p.spec.name, sig.name)
    for p in procs:
        p.pump.join(timeout=1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", type=Path, default=None, help="graph YAML (default: launch/graph.yaml)")
    parser.add_argument(
        "--groups", nargs="+", default=None, help="node groups to start (robot, edge, workstation); default all"
    )
    parser.add_argument("--params-file", type=Path, default=None, help="override the graph's parameter file")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="parameter override passed to every node")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds to wait for nodes to stop")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--record", type=Path, default=None, metavar="OUT.mcap",
                        help="also start a recorder node writing the graph's topics to this MCAP file")
    parser.add_argument("--robot", default=None, metavar="NAME",
                        help="the arm the simulator and the executor drive: a name of config/robots/ or a robot YAML "
                             "(default: the parameter file's, ivl_arm6)")
    parser.add_argument("--console", type=int, default=None, metavar="PORT",
                        help="also start the operator console on http://127.0.0.1:PORT/ (0: any free port; the URL "
                             "with its token is printed)")


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args.graph)
    specs = graph.select(args.groups)
    if args.record:
        try:
            specs.append(recorder_spec(args.record))
        except ValueError as e:
            print(f"error: --record: {e}", file=sys.stderr)
            return 2
    if args.robot is not None:
        why = robot_error(args.robot, simulated=any(s.module == SIM_MODULE for s in specs))
        if why:
            print(f"error: --robot: {why}", file=sys.stderr)
            return 2
        specs = with_robot(specs, args.robot)
    if args.console is not None:
        try:
            specs.append(console_spec(args.console))
        except ValueError as e:
            print(f"error: --console: {e}", file=sys.stderr)
            return 2
    return run_graph(specs, args.params_file or graph.params_file, args.param, args.grace, args.duration)
