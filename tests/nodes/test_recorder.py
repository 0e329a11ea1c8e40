"""``ivl-embodied record``: a running graph's topics into an MCAP file that closes cleanly on its own."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_record_writes_what_is_published_until_its_duration(loopback_dds, tmp_path):
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from ivl_embodied.transport import make_node, msg_type

    out = tmp_path / "s.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "ivl_embodied.cli", "record", str(out), "--duration", "6",
                             "--topics", "/chatter:std_msgs/msg/String", "joint_states:sensor_msgs/msg/JointState"],
                            env=loopback_dds, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = make_node("talker")
    try:
        pub = node.create_publisher("std_msgs/msg/String", "/chatter")
        node.wait_for_subscribers("/chatter", timeout=30)
        sent = 0
        while proc.poll() is None and sent < 20:
            pub.publish(msg_type("std_msgs/msg/String")(data=f"hello {sent}"))
            sent += 1
            node.spin_until(lambda: False, 0.05)
        log = proc.communicate(timeout=30)[0]
    finally:
        node.shutdown()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log
    with open(out, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert {c.topic for c in reader.get_summary().channels.values()} == {"/chatter", "/joint_states"}
        got = [m.data for _, c, _, m in reader.iter_decoded_messages() if c.topic == "/chatter"]
    assert got == [f"hello {i}" for i in range(sent)], (got, log)


def test_a_malformed_topic_entry_is_refused_before_recording(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ivl_embodied.cli", "record", str(tmp_path / "x.mcap"),
                          "--topics", "/chatter"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "NAME:pkg/msg/Type" in res.stderr, res.stderr
    assert not (tmp_path / "x.mcap").exists()
