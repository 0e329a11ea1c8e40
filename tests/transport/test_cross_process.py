"""Two processes on loopback: large messages, type-name matching, malformed payloads."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

import pytest

from ivl_embodied.transport import TopicTypeMismatchError, make_node, msg_type, serialize

PEER = Path(__file__).with_name("peer.py")


def test_image_and_embedding_cross_process_checksums(python: str, child_env: dict) -> None:
    node = make_node("large_sink")
    got: dict[str, object] = {}
    node.create_subscription("sensor_msgs/msg/Image", "/camera/color/image_raw",
                             lambda m: got.setdefault("image", m), "sensor_data")
    node.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", "/ivl/visual_embeddings",
                             lambda m: got.setdefault("embedding", m), "large_latest")
    child = subprocess.Popen([python, str(PEER), "large", "30"], stdout=subprocess.PIPE, text=True,
                             env=child_env)
    try:
        want = json.loads(child.stdout.readline())
        assert node.spin_until(lambda: len(got) == 2, timeout=30), f"received only {sorted(got)}"
    finally:
        child.terminate()
        child.wait(10)
        node.shutdown()
    img, emb = got["image"], got["embedding"]
    assert (img.width, img.height, img.encoding, img.step) == (640, 480, "rgb8", 1920)
    assert hashlib.sha256(img.data).hexdigest() == want["image"]
    assert len(emb.data) == want["embedding_bytes"] == 7 * 256 * 1024 * 2
    assert hashlib.sha256(emb.data).hexdigest() == want["embedding"]
    assert emb.tokens_per_tile == [256] * 7 and emb.dtype == emb.DTYPE_BFLOAT16


def test_matching_requires_the_same_type_name(caplog: pytest.LogCaptureFixture) -> None:
    pub_node, sub_node = make_node("typed_pub"), make_node("typed_sub")
    try:
        pub_node.create_publisher("std_msgs/msg/String", "/typed/right")
        pub_node.create_publisher("std_msgs/msg/String", "/typed/wrong")
        received = []
        sub_node.create_subscription("std_msgs/msg/String", "/typed/right", received.append)
        # Same topic, same layout (a single string) but another type name: DDS must not match.
        sub_node.create_subscription("ivl_embodied_msgs/msg/TaskRequest", "/typed/wrong", received.append)
        assert sub_node.wait_for_publishers("/typed/right", timeout=10) == 1
        with caplog.at_level(logging.ERROR), pytest.raises(TopicTypeMismatchError) as err:
            sub_node.wait_for_publishers("/typed/wrong", timeout=2)
        assert "std_msgs/msg/String" in str(err.value) and "ivl_embodied_msgs/msg/TaskRequest" in str(err.value)
        logged = [r.getMessage() for r in caplog.records if "type mismatch on /typed/wrong" in r.getMessage()]
        assert logged and "std_msgs/msg/String" in logged[0] and "TaskRequest" in logged[0]
        assert not [r for r in caplog.records if "/typed/right" in r.getMessage()]
    finally:
        pub_node.shutdown()
        sub_node.shutdown()


def test_wait_for_publishers_times_out_without_mismatch() -> None:
    node = make_node("lonely")
    try:
        node.create_subscription("std_msgs/msg/String", "/nobody/here", lambda m: None)
        with pytest.raises(TimeoutError, match="0 of 1 publisher"):
            node.wait_for_publishers("/nobody/here", timeout=0.5)
    finally:
        node.shutdown()


def test_malformed_samples_are_dropped_and_good_ones_still_flow(caplog: pytest.LogCaptureFixture) -> None:
    pub_node, sub_node = make_node("bad_pub"), make_node("bad_sub")
    String = msg_type("std_msgs/msg/String")
    got = []
    try:
        sub = sub_node.create_subscription("std_msgs/msg/String", "/bad/topic", got.append)
        pub = pub_node.create_publisher("std_msgs/msg/String", "/bad/topic")
        pub_node.wait_for_subscribers("/bad/topic", timeout=10)
        sub_node.wait_for_publishers("/bad/topic", timeout=10)
        # Structurally broken CDR (truncated, lengths past the end) is refused by Cyclone's C core
        # on write with a clear error; it never reaches the wire.
        with pytest.raises(RuntimeError, match=r"/bad/topic \(std_msgs/msg/String, 8 bytes\)"):
            pub.publish_raw(serialize(String(data="truncated"))[:7])
        pub.publish(String(data="first"))
        # Well-formed CDR that is not a valid String: invalid UTF-8, and trailing garbage.
        pub.publish_raw(b"\x00\x01\x00\x00\x03\x00\x00\x00\xff\xfe\x00\x00")
        pub.publish_raw(serialize(String(data="x")) + b"\xde\xad\xbe\xef" * 3)
        pub.publish(String(data="second"))
        with caplog.at_level(logging.ERROR):
            sub_node.spin_until(lambda: len(got) >= 2 and sub.dropped >= 2, timeout=10)
    finally:
        pub_node.shutdown()
        sub_node.shutdown()
    assert [m.data for m in got] == ["first", "second"]
    assert sub.dropped == 2
    errors = [r.getMessage() for r in caplog.records if "dropped malformed sample" in r.getMessage()]
    assert len(errors) == 2
    assert all("/bad/topic" in e and "std_msgs/msg/String" in e for e in errors)
    assert "12 bytes" in errors[0] and "UnicodeDecodeError" in errors[0]
    assert "24 bytes" in errors[1] and "trailing bytes" in errors[1]


def test_timers_and_keep_last_latest_only() -> None:
    node = make_node("latest")
    Int = msg_type("std_msgs/msg/String")
    got, ticks = [], []
    try:
        node.create_subscription(Int, "/latest", got.append, "large_latest")
        pub = node.create_publisher(Int, "/latest", "large_latest")
        node.wait_for_subscribers("/latest", timeout=5)
        for i in range(20):
            pub.publish(Int(data=str(i)))
        timer = node.create_timer(0.05, lambda: ticks.append(1))
        node.spin_until(lambda: len(ticks) >= 3, timeout=5)
        timer.cancel()
        n = len(ticks)
        node.spin_until(lambda: False, timeout=0.2)
    finally:
        node.shutdown()
    # keep-last 1: only the newest sample was still in the reader when we spun
    assert [m.data for m in got] == ["19"]
    assert n >= 3 and len(ticks) == n
