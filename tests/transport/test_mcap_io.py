"""MCAP recordings: our writer's files read back by an independent decoder (``mcap`` + ``mcap-ros2-support``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivl_embodied.transport import msg_type
from ivl_embodied.transport.cyclone_types import serialize
from ivl_embodied.transport.mcap_io import McapWriter, read_messages, schema_text


def _messages():
    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.transport.convert import header, image_to_msg, payload_to_msg

    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    emb = VisualEmbeddings(torch.randn(20, 16), (4, 16), 64, 48, 1, 1, True, 56, "enc")
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    return [
        ("/camera/color/image_raw", "sensor_msgs/msg/Image", image_to_msg(rgb, 5, "camera")),
        ("/ivl/visual_embeddings", "ivl_embodied_msgs/msg/VisualEmbedding",
         payload_to_msg(emb.to_payload("bf16"), 6, "camera")),
        ("/ivl/task_status", "ivl_embodied_msgs/msg/TaskStatus",
         S(header=header(7), task_id="t1", state=S.STATE_PLANNING, message="planning", attempt=1)),
    ], rgb


def test_an_independent_ros2_decoder_reads_every_message(tmp_path):
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    msgs, rgb = _messages()
    path = tmp_path / "x.mcap"
    with McapWriter(path) as out:
        out.channel("/joint_states", "sensor_msgs/msg/JointState")  # a channel with no message
        for i, (topic, type_name, msg) in enumerate(msgs * 2):
            out.write(topic, type_name, serialize(msg), 1000 + i)
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        channels = {c.topic for c in reader.get_summary().channels.values()}
        got = list(reader.iter_decoded_messages(log_time_order=True))
    assert channels == {t for t, _, _ in msgs} | {"/joint_states"}
    assert [c.topic for _, c, _, _ in got] == [t for t, _, _ in msgs * 2]
    assert all(s.encoding == "ros2msg" and c.message_encoding == "cdr" for s, c, _, _ in got)
    image, emb, status = (d for _, _, _, d in got[:3])
    assert (image.height, image.width, image.encoding) == (48, 64, "rgb8")
    assert np.array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(48, 64, 3), rgb)
    assert list(emb.tokens_per_tile) == [4, 16] and emb.hidden_size == 16 and len(emb.data) == 20 * 16 * 2
    assert status.task_id == "t1" and status.message == "planning" and status.header.stamp.nanosec == 7
    assert got[0][2].log_time == 1000 and got[3][2].sequence == 1  # per-topic sequence numbers
    ours = list(read_messages(path, topics=["/ivl/task_status"]))
    assert [r.msg.task_id for r in ours] == ["t1", "t1"] and ours[0].type_name == "ivl_embodied_msgs/msg/TaskStatus"


def test_schemas_are_the_msg_files_with_their_dependencies():
    text = schema_text("ivl_embodied_msgs/msg/VisualEmbedding")
    assert text.startswith("uint8 DTYPE_BFLOAT16=0\n") and "\nMSG: std_msgs/Header\n" in text
    assert "\nMSG: builtin_interfaces/Time\n" in text and "uint8[] data" in text


def test_bad_names_and_a_closed_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="ends in .mcap"):
        McapWriter(tmp_path / "x.bag")
    with pytest.raises(ValueError, match="compression must be one of"):
        McapWriter(tmp_path / "x.mcap", compression="gzip")
    out = McapWriter(tmp_path / "y.mcap")
    out.close()
    with pytest.raises(ValueError, match="is closed"):
        out.write("/a", "std_msgs/msg/Bool", serialize(msg_type("std_msgs/msg/Bool")(data=True)), 1)


def test_topic_entries_are_checked():
    from ivl_embodied.nodes.recorder_node import DEFAULT_TOPICS, parse_topics

    assert parse_topics(["/a:std_msgs/msg/Bool"]) == [("/a", "std_msgs/msg/Bool")]
    assert len(parse_topics(DEFAULT_TOPICS)) == len(DEFAULT_TOPICS)
    with pytest.raises(ValueError, match="NAME:pkg/msg/Type"):
        parse_topics(["camera/color/image_raw"])
