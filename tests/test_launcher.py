"""The ROS-free launcher: graph loading, signal forwarding, reporting a dying node."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ivl_embodied.launcher import NodeSpec, load_graph, node_argv

REPO = Path(__file__).resolve().parent.parent


def test_shipped_graph_loads_and_selects_groups():
    g = load_graph()
    assert {n.name for n in g.nodes} == {"sim_node", "vision_node", "planner_node", "executor_node"}
    assert g.params_file.is_file()
    assert [n.name for n in g.select(["edge"])] == ["vision_node"]
    with pytest.raises(ValueError, match="'moon'"):
        g.select(["moon"])


def test_bad_graph_is_reported(tmp_path):
    p = tmp_path / "graph.yaml"
    p.write_text("nodes: [{name: a, module: '', group: g}]\n")
    with pytest.raises(ValueError, match="'module'"):
        load_graph(p)
    p.write_text("nodes: 3\n")
    with pytest.raises(ValueError, match="'nodes' list"):
        load_graph(p)


def test_node_argv_uses_ros_conventions(tmp_path):
    argv = node_argv(NodeSpec("vision_node", "m.v", "edge"), tmp_path / "p.yaml", ["rate_hz:=3.0"])
    assert argv[1:] == ["-m", "m.v", "--ros-args", "-r", "__node:=vision_node",
                        "--params-file", str(tmp_path / "p.yaml"), "-p", "rate_hz:=3.0"]


def test_a_node_of_its_own_parameters_and_the_recorder(tmp_path):
    from ivl_embodied.launcher import recorder_spec

    spec = NodeSpec("x", "m.x", "robot", params=["a:=1"])  # a YAML list becomes a tuple
    assert node_argv(spec, tmp_path / "p.yaml", ["b:=2"])[-4:] == ["-p", "b:=2", "-p", "a:=1"]
    with pytest.raises(ValueError, match="NAME:=VALUE"):
        NodeSpec("x", "m.x", "robot", params=("a=1",))
    rec = recorder_spec(tmp_path / "r.mcap")
    assert rec.module == "ivl_embodied.nodes.recorder_node" and rec.params == (f"output:={tmp_path / 'r.mcap'}",)
    with pytest.raises(ValueError, match="ends in .mcap"):
        recorder_spec(tmp_path / "r.bag")


def test_robot_goes_to_the_simulator_and_the_executor_only():
    from ivl_embodied.launcher import load_graph, with_robot

    specs = {s.name: s for s in with_robot(load_graph().nodes, "panda")}
    assert specs["sim_node"].params[-1] == specs["executor_node"].params[-1] == "robot:=panda"
    assert not any("robot:=" in p for n in ("vision_node", "planner_node") for p in specs[n].params)


def test_the_console_spec_serves_on_the_port_given():
    from ivl_embodied.launcher import console_spec

    spec = console_spec(8090)
    assert spec.module == "ivl_embodied.nodes.console_node" and spec.params == ("port:=8090",)
    for bad in (-1, 70000, True, "80"):
        with pytest.raises(ValueError, match="port must be 0..65535"):
            console_spec(bad)


def _fake_graph(tmp_path, body_a, body_b, b_extra=""):
    pkg = tmp_path / "fakenodes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(textwrap.dedent(body_a))
    (pkg / "b.py").write_text(textwrap.dedent(body_b))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "p.yaml").write_text("/**:\n  ros__parameters: {}\n")
    (tmp_path / "launch").mkdir()
    g = tmp_path / "launch" / "graph.yaml"
    g.write_text(
        "params_file: p.yaml\nnodes:\n"
        "  - {name: a, module: fakenodes.a, group: g1}\n"
        f"  - {{name: b, module: fakenodes.b, group: g2{b_extra}}}\n"
    )
    return g


SLEEPER = """
import signal, sys, time
def stop(*_):
    print("stopping cleanly", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
print("up", sys.argv[1:], flush=True)
while True:
    time.sleep(0.05)
"""


def _launch(tmp_path, graph, *extra):
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    return subprocess.Popen(
        [sys.executable, "-m", "ivl_embodied.cli", "launch", "--graph", str(graph), "--grace", "3", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _wait_for(proc, *needles, timeout=30.0):
    """Read the launcher's output until every needle was seen (in any order), or fail after ``timeout``."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    deadline = time.monotonic() + timeout
    while not all(n in "".join(seen) for n in needles):
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"{needles!r} not all seen within {timeout} s in {seen!r}") from None
    return lines, seen


def test_sigint_reaches_every_node(tmp_path):
    g = _fake_graph(tmp_path, SLEEPER, SLEEPER)
    proc = _launch(tmp_path, g)
    lines, seen = _wait_for(proc, "[a] up", "[b] up")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    time.sleep(0.2)  # let the reader thread drain the pipe
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert proc.returncode == 0
    assert "[a] stopping cleanly" in out and "[b] stopping cleanly" in out


def test_dying_node_stops_graph_and_is_named(tmp_path):
    g = _fake_graph(tmp_path, SLEEPER, "import sys, time\ntime.sleep(0.5)\nsys.exit(7)\n")
    proc = _launch(tmp_path, g)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert "node b exited with code 7" in out
    assert "[a] stopping cleanly" in out


def test_a_respawning_node_is_restarted_and_the_graph_keeps_running(tmp_path):
    crasher = "import sys, time\nprint('b up', flush=True)\ntime.sleep(0.3)\nsys.exit(3)\n"
    g = _fake_graph(tmp_path, SLEEPER, crasher, ", respawn: true, respawn_delay: 0.2")
    proc = _launch(tmp_path, g, "--duration", "4")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "node b exited with code 3; respawning it in 0.2 s" in out
    assert "respawned b" in out and "restart 2" in out  # again and again, while a keeps running
    assert out.count("[b] b up") >= 3 and out.count("[a] up") == 1 and "[a] stopping cleanly" in out


def test_bad_respawn_fields_are_named(tmp_path):
    from ivl_embodied.launcher import load_graph

    g = _fake_graph(tmp_path, SLEEPER, SLEEPER, ", respawn: maybe")
    with pytest.raises(ValueError, match="respawn must be true or false, got 'maybe'"):
        load_graph(g)
    g.write_text(g.read_text().replace("respawn: maybe", "respawn: true, respawn_delay: -1"))
    with pytest.raises(ValueError, match="respawn_delay must be 0..600 s, got -1"):
        load_graph(g)


def test_groups_select_nodes(tmp_path):
    g = _fake_graph(tmp_path, SLEEPER, SLEEPER)
    proc = _launch(tmp_path, g, "--groups", "g2", "--duration", "1.5")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "[b] up" in out and "[a]" not in out


def test_a_robot_the_simulator_cannot_drive_is_refused_when_the_graph_simulates_it(tmp_path):
    from ivl_embodied.launcher import robot_error

    # a real arm's file whose description has no simulator actuators: fine next to a real arm, not in our simulator
    robot = tmp_path / "real.yaml"
    robot.write_text("name: real\ndescription: sim/assets/panda/panda.xml\njoints: [panda_joint1, panda_joint2]\n"
                     "tool_frame: tcp\nhome: [0, 0]\n")
    assert robot_error(str(robot), simulated=False) is None
    assert "not ready for our simulator" in robot_error(str(robot), simulated=True)
    assert "no robot 'kuka'" in robot_error("kuka", simulated=False)
    assert robot_error("ur5e", simulated=True) is None
