"""docs/sim_contract.md is what sim_node does, and what the Gazebo bridge configuration bridges.

The contract's tables are read from the document itself, so the document, ``sim_node`` and
``sim/gazebo/ros_gz_bridge.yaml`` cannot drift apart: names, types and QoS of every endpoint, and the frames,
encodings and units of the messages sim_node publishes.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from ivl_embodied.transport import QosProfile

pytest.importorskip("mujoco")
REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "docs" / "sim_contract.md"
BRIDGE = REPO / "sim" / "gazebo" / "ros_gz_bridge.yaml"
QOS = {"sensor": QosProfile("best_effort", 5, "volatile"), "reliable": QosProfile("reliable", 10, "volatile"),
       "latched": QosProfile("reliable", 1, "transient_local"),
       "best effort, volatile, keep last 1": QosProfile("best_effort", 1, "volatile")}
OURS_ONLY = {"/ivl/sim/goal_reached", "/ivl/sim/task_instruction", "/rosout"}


def contract_rows(section: str, text: str | None = None) -> list[dict]:
    """The table under ``## <section>`` of the contract (or ``text``) as dicts (backticks stripped)."""
    text = CONTRACT.read_text() if text is None else text
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = [c.strip().replace("`", "") for c in ln.strip("|").split("|")]
        rows.append(dict(zip(head, cells, strict=True)))
    assert rows, f"no table under {section!r} in {CONTRACT}"
    return rows


def absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


PUBLISHES = contract_rows("What the robot side publishes")
SUBSCRIBES = contract_rows("What the robot side subscribes to")


def test_the_contract_reads_as_a_contract():
    for row in PUBLISHES + SUBSCRIBES:
        assert row["QoS"] in QOS, row
        assert re.fullmatch(r"[a-z0-9_]+/msg/[A-Za-z0-9]+", row["type"]), row
        assert row["bridged"] in ("yes", "no"), row


@pytest.fixture
def sim(loopback_dds):
    from ivl_embodied.nodes.sim_node import SimNode

    node = SimNode.create({"split": "val", "task_index": 0, "camera_rate_hz": 10.0})

    def spin_then_close() -> None:  # the renderer's GL context belongs to the thread that renders
        try:
            node.spin()
        finally:
            node.shutdown()

    spinner = threading.Thread(target=spin_then_close, daemon=True)
    spinner.start()
    yield node
    node.node.request_shutdown()
    spinner.join(timeout=10)


def endpoint_mismatches(n, publishes: list[dict], subscribes: list[dict]) -> list[str]:
    """What the transport node ``n`` publishes and subscribes to that the contract's rows do not say."""
    out = []
    pubs = {t: p for t, p in n._publishers.items() if t not in OURS_ONLY}
    if set(pubs) != {absolute(r["topic"]) for r in publishes}:
        out.append(f"publishes {sorted(pubs)}, the contract says {sorted(absolute(r['topic']) for r in publishes)}")
    for row in publishes:
        pub = pubs.get(absolute(row["topic"]))
        if pub is not None and (pub.type_name, pub.qos) != (row["type"], QOS[row["QoS"]]):
            out.append(f"{row['topic']}: {pub.type_name} {pub.qos}, the contract says {row['type']} {row['QoS']}")
    subs: dict[str, list] = {}
    for s in n._subscriptions:
        subs.setdefault(s.topic, []).append(s)
    if set(subs) != {absolute(r["topic"]) for r in subscribes}:
        out.append(f"subscribes {sorted(subs)}, the contract says {sorted(absolute(r['topic']) for r in subscribes)}")
    for row in subscribes:
        here = subs.get(absolute(row["topic"]), [])
        if here and ({s.type_name for s in here} != {row["type"]} or QOS[row["QoS"]] not in [s.qos for s in here]):
            out.append(f"{row['topic']}: {[(s.type_name, s.qos) for s in here]}, the contract says {row['type']} "
                       f"{row['QoS']}")
    return out


def test_sim_node_publishes_and_subscribes_exactly_the_contract(sim):
    assert endpoint_mismatches(sim.node, PUBLISHES, SUBSCRIBES) == []
    # and the check can fail: a topic renamed in the document, or a QoS changed, no longer matches sim_node
    text = CONTRACT.read_text()
    drifted = text.replace("| `joint_states` |", "| `robot/joint_states` |")
    assert "robot/joint_states" in endpoint_mismatches(
        sim.node, contract_rows("What the robot side publishes", drifted), SUBSCRIBES)[0]
    drifted = text.replace("| `/tf_static` | `tf2_msgs/msg/TFMessage` | latched |",
                           "| `/tf_static` | `tf2_msgs/msg/TFMessage` | reliable |")
    assert any(m.startswith("/tf_static") for m in endpoint_mismatches(
        sim.node, contract_rows("What the robot side publishes", drifted), SUBSCRIBES))


def test_sim_node_messages_carry_the_contract_frames_encodings_and_units(sim):
    from ivl_embodied.sim.world import ARM_JOINTS
    from ivl_embodied.transport import make_node
    from ivl_embodied.transport.convert import msg_to_image, stamp_to_ns

    got: dict[str, list] = {}
    listener = make_node("contract_listener")
    try:
        for row in PUBLISHES:
            topic = absolute(row["topic"])
            listener.create_subscription(row["type"], topic, lambda m, t=topic: got.setdefault(t, []).append(m),
                                         QOS[row["QoS"]])
        assert listener.spin_until(lambda: all(got.get(absolute(r["topic"])) for r in PUBLISHES)
                                   and len(got["/camera/color/camera_info"]) >= 3, 60), \
            {t: len(v) for t, v in got.items()}
    finally:
        listener.shutdown()
    frames = {absolute(r["topic"]): r["frame"] for r in PUBLISHES}
    rgb, depth, info = (got[t][-1] for t in ("/camera/color/image_raw", "/camera/depth/image_raw",
                                              "/camera/color/camera_info"))
    for topic in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info"):
        assert got[topic][-1].header.frame_id == frames[topic]
    assert rgb.encoding == "rgb8" and depth.encoding == "32FC1"
    # aligned: the same size, and each stamp has its colour, depth and info
    assert (rgb.width, rgb.height) == (depth.width, depth.height) == (info.width, info.height)
    stamps = [{stamp_to_ns(m.header.stamp) for m in got[t]} for t in
              ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info")]
    assert stamps[0] & stamps[1] & stamps[2]
    metres = msg_to_image(depth)
    assert 0.3 < float(np.nanmedian(metres)) < 3.0  # a table about a metre from the camera: metres, not mm
    assert info.k[0] > 0 and info.k[4] > 0 and not any(info.d)
    (tf,) = got["/tf_static"][-1].transforms
    parent, child = (s.strip() for s in frames["/tf_static"].split("→"))
    assert (tf.header.frame_id, tf.child_frame_id) == (parent, child)
    assert (parent, child) == ("base_link", frames["/camera/color/image_raw"])
    joints = got["/joint_states"][-1]
    assert set(ARM_JOINTS) <= set(joints.name) and len(joints.position) == len(joints.name)
    fingers = [p for name, p in zip(joints.name, joints.position, strict=True) if name not in ARM_JOINTS]
    assert fingers and all(0 <= p <= 0.05 for p in fingers)  # metres of travel, not an angle or a percentage
    assert stamp_to_ns(got["/clock"][-1].clock) > 0


def test_the_gazebo_bridge_bridges_exactly_the_rows_marked_bridged():
    entries = yaml.safe_load(BRIDGE.read_text())
    bridged = {absolute(r["topic"]): r["type"] for r in PUBLISHES + SUBSCRIBES if r["bridged"] == "yes"}
    assert {absolute(e["ros_topic_name"]): e["ros_type_name"] for e in entries} == bridged
    for e in entries:
        sub = any(absolute(r["topic"]) == absolute(e["ros_topic_name"]) for r in SUBSCRIBES)
        assert e["direction"] == ("ROS_TO_GZ" if sub else "GZ_TO_ROS"), e
        assert e["gz_type_name"].startswith("gz.msgs."), e
