"""Message ↔ library conversions used by the nodes."""

import numpy as np
import pytest

from ivl_embodied.transport import convert as C
from ivl_embodied.transport import deserialize, msg_type, serialize


def _wire(msg):
    """Round-trip through CDR, as a message arrives from another process."""
    return deserialize(type(msg), serialize(msg))


def test_rgb_image_round_trip_through_cdr():
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = _wire(C.image_to_msg(rgb, 123_000_000_456, "cam"))
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 64, 48, 192)
    assert C.stamp_to_ns(msg.header.stamp) == 123_000_000_456
    np.testing.assert_array_equal(C.msg_to_image(msg), rgb)


def test_bgr_rgba_mono_and_padded_rows_become_rgb():
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image = msg_type("sensor_msgs/msg/Image")
    bgr = Image(height=4, width=5, encoding="bgr8", step=15, data=rgb[:, :, ::-1].tobytes())
    np.testing.assert_array_equal(C.msg_to_image(bgr), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    m = Image(height=4, width=5, encoding="rgba8", step=20, data=rgba.tobytes())
    np.testing.assert_array_equal(C.msg_to_image(m), rgb)
    padded = np.zeros((4, 18), np.uint8)  # 3 bytes of row padding
    padded[:, :15] = rgb.reshape(4, 15)
    m = Image(height=4, width=5, encoding="rgb8", step=18, data=padded.tobytes())
    np.testing.assert_array_equal(C.msg_to_image(m), rgb)
    mono = Image(height=4, width=5, encoding="mono8", step=5, data=rgb[:, :, 0].tobytes())
    out = C.msg_to_image(mono)
    assert out.shape == (4, 5, 3) and (out[:, :, 2] == rgb[:, :, 0]).all()


def test_depth_encodings_in_metres():
    d = np.array([[0.5, np.nan], [1.25, 0.0]], np.float32)
    out = C.msg_to_image(_wire(C.image_to_msg(d, 0, "depth")))
    np.testing.assert_array_equal(out, [[0.5, 0.0], [1.25, 0.0]])
    mm = np.array([[500, 1250]], np.uint16)
    np.testing.assert_allclose(C.msg_to_image(C.image_to_msg(mm, 0, "d")), [[0.5, 1.25]])
    big = msg_type("sensor_msgs/msg/Image")(height=1, width=2, encoding="16UC1", is_bigendian=1, step=4,
                                             data=mm.astype(">u2").tobytes())
    np.testing.assert_allclose(C.msg_to_image(big), [[0.5, 1.25]])


@pytest.mark.parametrize(
    "fields, needle",
    [
        (dict(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8), "'yuv422'"),
        (dict(height=0, width=2, encoding="rgb8", step=6, data=b""), "2x0"),
        (dict(height=20000, width=2, encoding="rgb8", step=6, data=b""), "2x20000"),
        (dict(height=2, width=2, encoding="rgb8", step=5, data=b"\0" * 10), "step 5"),
        (dict(height=2, width=2, encoding="rgb8", step=6, data=b"\0" * 11), "11 bytes"),
    ],
)
def test_bad_images_are_named(fields, needle):
    with pytest.raises(C.MessageError, match=needle):
        C.msg_to_image(msg_type("sensor_msgs/msg/Image")(**fields))


def test_image_to_msg_refuses_unknown_layout():
    with pytest.raises(C.MessageError, match="float64"):
        C.image_to_msg(np.zeros((2, 2, 3)), 0, "x")


def test_camera_info_and_transform_round_trip():
    from ivl_embodied.perception.grounding import CameraInfo

    ang = 0.7
    t = np.eye(4)
    t[:3, :3] = [[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]]
    t[:3, 3] = [0.1, -0.2, 0.9]
    info = CameraInfo(width=640, height=480, k=np.array([[615.0, 0, 320], [0, 615, 240], [0, 0, 1]]),
                      t_base_camera=t)
    msg = _wire(C.camera_info_to_msg(info, 5))
    tf = _wire(C.matrix_to_transform_stamped(t, "base_link", info.frame_id, 5))
    back = C.msg_to_camera_info(msg, C.transform_to_matrix(tf.transform))
    np.testing.assert_allclose(back.k, info.k)
    np.testing.assert_allclose(back.t_base_camera, t, atol=1e-12)
    assert (back.width, back.height, back.frame_id) == (640, 480, info.frame_id)
    bad = msg_type("sensor_msgs/msg/CameraInfo")(width=640, height=480)  # k all zeros
    with pytest.raises(C.MessageError, match="camera_info"):
        C.msg_to_camera_info(bad, np.eye(4))


def test_trajectory_and_gripper_round_trip():
    from ivl_embodied.robot.interface import JointTrajectory, JointTrajectoryPoint

    traj = JointTrajectory(("j1", "j2"), (JointTrajectoryPoint((0.0, 1.0), (0.0, 0.0), 0.0),
                                          JointTrajectoryPoint((0.5, -1.0), (0.1, 0.2), 1.25)))
    back = C.msg_to_trajectory(_wire(C.trajectory_to_msg(traj)))
    assert back == traj
    assert C.msg_to_gripper(_wire(C.gripper_to_msg([0.02, 0.02])), 2) == [0.02, 0.02]
    with pytest.raises(C.MessageError, match=r"1 finite joint position\(s\), got \[0.02, 0.02\]"):
        C.msg_to_gripper(msg_type("std_msgs/msg/Float64MultiArray")(data=[0.02, 0.02]), 1)
    with pytest.raises(C.MessageError, match="nan"):
        C.msg_to_gripper(msg_type("std_msgs/msg/Float64MultiArray")(data=[float("nan")]), 1)
    nonmono = msg_type("trajectory_msgs/msg/JointTrajectory")(
        joint_names=["j1"], points=[msg_type("trajectory_msgs/msg/JointTrajectoryPoint")(positions=[0.0])] * 2)
    with pytest.raises(C.MessageError, match="increase"):
        C.msg_to_trajectory(nonmono)


def test_embedding_payload_round_trip():
    import torch

    from ivl_embodied.embeddings.payload import VisualEmbeddings

    emb = VisualEmbeddings(torch.randn(64 + 16, 8), (64, 16), 100, 80, 2, 1, False, 448, "enc")
    msg = _wire(C.payload_to_msg(emb.to_payload("bf16"), 42, "cam"))
    back = VisualEmbeddings.from_payload(C.msg_to_payload(msg))
    assert back.tokens_per_tile == (64, 16) and back.embeddings.dtype == torch.bfloat16
    torch.testing.assert_close(back.embeddings, emb.embeddings.to(torch.bfloat16), rtol=0, atol=0)
