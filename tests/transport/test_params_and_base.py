"""Parameter YAML / --ros-args parsing, NodeBase parameters, SIGINT/SIGTERM shutdown."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from ivl_embodied.nodes.base import NodeBase
from ivl_embodied.transport import ParameterError, make_node
from ivl_embodied.transport.params import (
    ParameterFileError,
    load_params_file,
    parse_ros_args,
    resolve_parameters,
)

SIG_NODE = Path(__file__).with_name("sig_node.py")

YAML = textwrap.dedent("""
    /**:
      ros__parameters:
        use_sim_time: true
        rate: 10.0
        camera:
          topic: /camera/color/image_raw
          size: [640, 480]
    planner_node:
      ros__parameters:
        rate: 2.5
        max_new_tokens: 96
    /vision_node:
      ros__parameters:
        rate: 30.0
""")


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_wildcard_and_per_node_sections(tmp_path: Path) -> None:
    f = write(tmp_path, YAML)
    assert load_params_file(f, "planner_node") == {
        "use_sim_time": True, "rate": 2.5, "camera.topic": "/camera/color/image_raw",
        "camera.size": [640, 480], "max_new_tokens": 96,
    }
    assert load_params_file(f, "vision_node")["rate"] == 30.0
    assert load_params_file(f, "executor_node")["rate"] == 10.0
    assert "max_new_tokens" not in load_params_file(f, "executor_node")


def test_cli_overrides_files_and_types(tmp_path: Path) -> None:
    f = write(tmp_path, YAML)
    g = write(tmp_path, "/**:\n  ros__parameters:\n    max_new_tokens: 7\n", "g.yaml")
    argv = ["--extra", "--ros-args", "--params-file", str(f), "--params-file", str(g),
            "-p", "rate:=5", "-p", "name:=cam one", "-p", "flag:=false", "-p", "xs:=[1, 2.5]", "--", "tail"]
    params, ros = resolve_parameters("planner_node", argv)
    assert ros.remaining == ("--extra", "tail")
    assert params["rate"] == 5 and isinstance(params["rate"], int)
    assert params["name"] == "cam one" and params["flag"] is False and params["xs"] == [1.0, 2.5]
    assert params["max_new_tokens"] == 7  # later file wins over the earlier per-node value
    assert params["use_sim_time"] is True


@pytest.mark.parametrize(
    "text, match",
    [
        ("planner_node:\n  rate: 1\n", "ros__parameters"),
        ("- a\n- b\n", "top level"),
        ("/**:\n  ros__parameters:\n    x: [1, a]\n", "mixes types"),
        ("/**:\n  ros__parameters:\n    x: null\n", "unsupported parameter value None"),
        ("/**:\n  ros__parameters: [1]\n", "must be a mapping"),
        ("/**: {ros__parameters: {a: 1}, extra: 2}\n", "unexpected keys"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, text: str, match: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(ParameterFileError, match=match) as err:
        load_params_file(f, "planner_node")
    assert str(f) in str(err.value)


def test_bad_cli_arguments() -> None:
    with pytest.raises(ParameterFileError, match="name:=value"):
        parse_ros_args(["--ros-args", "-p", "rate=5"])
    with pytest.raises(ParameterFileError, match="needs a value"):
        parse_ros_args(["--ros-args", "-p"])
    with pytest.raises(ParameterFileError, match="unknown ROS argument '--bogus'"):
        parse_ros_args(["--ros-args", "--bogus"])
    with pytest.raises(ParameterFileError, match="cannot read parameter file"):
        load_params_file("/nonexistent/x.yaml", "n")


def test_declared_parameters_are_typed() -> None:
    node = make_node("typed", parameters={"rate": 5, "name": 3, "flag": True})
    try:
        assert node.declare_parameter("rate", 1.0) == 5.0 and isinstance(node.get_parameter("rate"), float)
        assert node.declare_parameter("flag", False) is True
        assert node.declare_parameter("untouched", "x") == "x"
        with pytest.raises(ParameterError, match="'name' is str .* given int 3"):
            node.declare_parameter("name", "cam")
        with pytest.raises(ParameterError, match="declared twice"):
            node.declare_parameter("rate", 2.0)
        with pytest.raises(ParameterError, match="not declared"):
            node.get_parameter("nope")
    finally:
        node.shutdown()


class _Probe(NodeBase):
    NAME = "probe_node"
    PARAMETERS = {"topic": "/probe", "depth": 3}

    def setup(self) -> None:
        self.got = []
        self.sub = self.node.create_subscription("std_msgs/msg/String", self.params["topic"], self.got.append)


def test_node_base_declares_and_sets_up(caplog: pytest.LogCaptureFixture) -> None:
    probe = _Probe.create({"depth": 7, "typo": 1})
    try:
        assert probe.params == {"topic": "/probe", "depth": 7}
        assert probe.sub.topic == "/probe"
        assert any("typo" in r.getMessage() for r in caplog.records)
    finally:
        probe.shutdown()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_gives_clean_shutdown(sig: signal.Signals, python: str, child_env: dict, tmp_path: Path) -> None:
    f = write(tmp_path, "tick_node:\n  ros__parameters:\n    topic: /from_file\n")
    proc = subprocess.Popen(
        [python, str(SIG_NODE), "--ros-args", "--params-file", str(f), "-p", "period:=0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env,
    )
    try:
        ready = proc.stdout.readline()
        assert ready.strip() == "READY period=0.05 topic=/from_file", proc.stderr.read() if not ready else ready
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "CLOSED"
    assert f"shut down cleanly on {sig.name}" in err
