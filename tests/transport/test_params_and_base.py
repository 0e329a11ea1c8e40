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
        assert probe.params == {"topic": "/probe", "depth": 7, "use_sim_time": False}  # every node has use_sim_time
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


def test_names_expand_and_remap_as_in_ros2() -> None:
    from ivl_embodied.transport.naming import NodeNames, Remap

    plain = NodeNames("executor_node")
    assert plain.resolve("ivl/plan") == "/ivl/plan" and plain.resolve("/tf_static") == "/tf_static"
    names = NodeNames("exe", "/robot1", (Remap("joint_states", "/arm/joint_states"), Remap("ivl/plan", "plan2"),
                                         Remap("/x", "/y", node="someone_else")))
    assert names.fully_qualified_name == "/robot1/exe"
    assert names.resolve("ivl/task_status") == "/robot1/ivl/task_status"
    assert names.resolve("joint_states") == "/arm/joint_states"  # source expanded in the node's namespace
    assert names.resolve("/joint_states") == "/joint_states"  # another name: no rule matches
    assert names.resolve("ivl/plan") == "/robot1/plan2"  # a relative target goes under the namespace too
    assert names.resolve("/x") == "/x"  # a rule for another node
    assert names.resolve("~/debug") == "/robot1/exe/debug"
    with pytest.raises(ValueError, match="namespace"):
        NodeNames("n", "/bad ns")


def test_ros_args_name_namespace_remaps_and_log_levels() -> None:
    ros = parse_ros_args(["--ros-args", "-r", "__ns:=/robot1", "-r", "executor_node:__node:=exe", "-r",
                          "other_node:__ns:=/nope", "-r", "joint_states:=/arm/js", "--log-level", "debug",
                          "--log-level", "exe:=warn", "--disable-rosout-logs", "--", "rest"])
    names = ros.node_names("executor_node")
    assert (names.name, names.namespace) == ("exe", "/robot1")
    assert names.resolve("joint_states") == "/arm/js"
    assert ros.node_names("other_node").namespace == "/nope"
    assert ros.log_levels == {"": 10, "exe": 30} and not ros.rosout_logs and ros.remaining == ("rest",)
    for bad, match in ((["-r", "nope"], "from:=to"), (["-r", "__weird:=x"], "__weird"),
                       (["--log-level", "loud"], "level must be"), (["-r", "__ns:=/a b"], "namespace"),
                       (["--frobnicate"], "'--frobnicate'")):
        with pytest.raises(ParameterFileError, match=match):
            parse_ros_args(["--ros-args", *bad])


def test_parameter_sections_address_a_renamed_namespaced_node(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("/robot1/exe:\n  ros__parameters: {a: 1}\n/other/exe:\n  ros__parameters: {a: 2}\n"
                 "/**/exe:\n  ros__parameters: {b: 3}\nexecutor_node:\n  ros__parameters: {c: 4}\n")
    params, _ = resolve_parameters("executor_node", ["--ros-args", "-r", "__node:=exe", "-r", "__ns:=/robot1",
                                                     "--params-file", str(f)])
    assert params == {"a": 1, "b": 3}


def test_a_node_with_stray_arguments_exits_2_naming_them(capsys: pytest.CaptureFixture) -> None:
    from ivl_embodied.nodes.base import run_node

    class Stray(NodeBase):
        NAME = "stray_node"

    assert run_node(Stray, ["--verbose"]) == 2
    assert "'--verbose'" in capsys.readouterr().err


def test_a_cyclone_node_announces_itself_and_its_endpoints_on_ros_discovery_info(loopback_dds) -> None:
    """What a ROS 2 tool reads to list nodes: ParticipantEntitiesInfo with the GUIDs of our endpoints."""
    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from ivl_embodied.transport import msg_type
    from ivl_embodied.transport.naming import NodeNames

    node = make_node("announcer", backend="cyclonedds", names=NodeNames("announcer", "/robot1"))
    pub = node.create_publisher("std_msgs/msg/String", "chatter")
    sub = node.create_subscription("std_msgs/msg/String", "listen", lambda m: None)
    dp = DomainParticipant(node.domain_id)
    Info = msg_type("rmw_dds_common/msg/ParticipantEntitiesInfo")
    reader = DataReader(dp, Topic(dp, "ros_discovery_info", Info),
                        qos=Qos(Policy.Reliability.Reliable(0), Policy.Durability.TransientLocal,
                                Policy.History.KeepLast(1)))
    try:
        infos: list = []
        for _ in range(100):
            infos += [s for s in reader.take(N=10) if s.gid.data == node._participant.guid.bytes]
            if infos and len(infos[-1].node_entities_info_seq[0].reader_gid_seq) == 1:
                break
            node.spin_once(0.05)
        (entry,) = infos[-1].node_entities_info_seq
        assert (entry.node_namespace, entry.node_name) == ("/robot1", "announcer")
        assert [g.data for g in entry.reader_gid_seq] == [sub._reader.guid.bytes]
        writers = {g.data for g in entry.writer_gid_seq}
        assert pub._writer.guid.bytes in writers and len(writers) == 2  # chatter and /rosout
        assert pub.topic == "/robot1/chatter" and sub.topic == "/robot1/listen"
    finally:
        node.shutdown()
        dp.__del__()
