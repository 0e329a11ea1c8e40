"""vision_node and planner_node: callbacks called directly (no spinning), then as processes."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import time

import numpy as np
import pytest

from ivl_embodied.plan import parse_plan
from ivl_embodied.transport import msg_type
from ivl_embodied.transport.convert import image_to_msg, msg_to_payload, msg_to_plan, stamp_to_ns


class Capture:
    def __init__(self, then=None):
        self.msgs, self.then = [], then

    def publish(self, msg):
        self.msgs.append(msg)
        if self.then is not None:
            self.then(msg)


def _rgb(seed=0, w=120, h=90):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def vision(loopback_dds, split_tiny):
    from ivl_embodied.nodes.vision_node import VisionNode

    node = VisionNode.create({"checkpoint": str(split_tiny["vision"]), "vir_mode": "all64", "max_num_tiles": 4})
    node.pub = Capture()
    yield node
    node.shutdown()


@pytest.fixture
def planner(loopback_dds, split_tiny):
    from ivl_embodied.nodes.planner_node import PlannerNode

    node = PlannerNode.create({"checkpoint": str(split_tiny["language"]), "max_new_tokens": 120})
    node.plan_pub, node.status.publisher = Capture(), Capture()
    yield node
    node.shutdown()


def test_vision_node_publishes_what_the_encoder_computes(vision):
    import torch

    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.vision.encoder import encode_image
    from ivl_embodied.vision.vir import ViRPolicy

    rgb = _rgb()
    vision.on_image(image_to_msg(rgb, 7_000_000_001, "camera_color_optical_frame"))
    vision.on_timer()
    (msg,) = vision.pub.msgs
    assert stamp_to_ns(msg.header.stamp) == 7_000_000_001
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert (msg.source_width, msg.source_height) == (120, 90)
    assert msg.dtype == msg.DTYPE_BFLOAT16
    n_tiles = msg.grid_cols * msg.grid_rows + int(msg.has_thumbnail)
    assert list(msg.tokens_per_tile) == [1] * n_tiles  # 56-px tiles: 4 tokens full, 1 compressed
    got = VisualEmbeddings.from_payload(msg_to_payload(msg))
    want = encode_image(vision.backend.encoder, rgb, ViRPolicy("compressed"), max_tiles=4)
    torch.testing.assert_close(got.embeddings, want.embeddings.to(torch.bfloat16), rtol=0, atol=0)
    vision.on_timer()  # no new image: nothing published twice
    assert len(vision.pub.msgs) == 1


def test_vision_node_tiles_as_the_checkpoint_was_trained(loopback_dds, split_tiny, tmp_path):
    """max_num_tiles 0 (the default) takes the planner's own tile budget from ivl_planner.json: a
    one-tile planner gets the whole frame in one tile, as in training and sim-eval."""
    import shutil

    from ivl_embodied.nodes.vision_node import VisionNode

    vision_dir = tmp_path / "vision"
    shutil.copytree(split_tiny["vision"], vision_dir)
    counts = {}
    for name, params in (("no meta", {}), ("meta", {}), ("explicit", {"max_num_tiles": 4})):
        if name == "meta":
            (vision_dir / "ivl_planner.json").write_text('{"max_tiles": 1, "tile_size": 56}')
        node = VisionNode.create({"checkpoint": str(vision_dir), "vir_mode": "all256", **params})
        node.pub = Capture()
        try:
            node.encode_and_publish(image_to_msg(_rgb(w=200, h=60), 1, "cam"))
            (msg,) = node.pub.msgs
            counts[name] = (node.max_tiles, msg.grid_cols * msg.grid_rows + int(msg.has_thumbnail))
        finally:
            node.shutdown()
    assert counts["meta"] == (1, 1)
    assert counts["no meta"][0] == 6 and counts["no meta"][1] > 1  # InternVL tiling of a wide image
    assert counts["explicit"][0] == 4 and counts["explicit"][1] > 1
    with pytest.raises(ValueError, match="max_num_tiles must be an int >= 0"):
        VisionNode.create({"checkpoint": str(vision_dir), "max_num_tiles": -1})


def test_vision_node_encodes_a_kept_frame_mirrored_on_request(vision, caplog):
    import torch

    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.vision.encoder import encode_image
    from ivl_embodied.vision.vir import ViRPolicy

    vision.mirrored_pub = Capture()
    rgb = _rgb(5)
    vision.on_image(image_to_msg(rgb, 42, "cam"))
    vision.on_timer()
    assert vision.mirrored_pub.msgs == []  # nothing mirrored unless asked
    Header = msg_type("std_msgs/msg/Header")
    from ivl_embodied.transport.convert import ns_to_stamp

    vision.on_mirror_request(Header(stamp=ns_to_stamp(42)))
    (msg,) = vision.mirrored_pub.msgs
    assert stamp_to_ns(msg.header.stamp) == 42 and msg.header.frame_id == "cam"
    got = VisualEmbeddings.from_payload(msg_to_payload(msg))
    want = encode_image(vision.backend.encoder, np.ascontiguousarray(rgb[:, ::-1]), ViRPolicy("compressed"),
                        max_tiles=4)
    torch.testing.assert_close(got.embeddings, want.embeddings.to(torch.bfloat16), rtol=0, atol=0)
    vision.on_mirror_request(Header(stamp=ns_to_stamp(43)))
    assert len(vision.mirrored_pub.msgs) == 1 and "no longer kept" in caplog.text


def test_vision_node_drops_stale_and_malformed_images(vision, caplog):
    vision.params["max_input_age_s"] = 0.05
    vision.on_image(image_to_msg(_rgb(), 0, "cam"))
    time.sleep(0.1)
    vision.on_timer()
    assert vision.pub.msgs == []
    bad = msg_type("sensor_msgs/msg/Image")(height=2, width=2, encoding="rgb8", step=6, data=b"\0" * 5)
    vision.params["max_input_age_s"] = 2.0
    vision.on_image(bad)
    vision.on_timer()
    assert vision.pub.msgs == [] and "5 bytes" in caplog.text


def _embedding_msg(vision, seed=0):
    vision.on_image(image_to_msg(_rgb(seed), 1, "cam"))
    vision.on_timer()
    return vision.pub.msgs[-1]


def _task(text, task_id="t1"):
    return msg_type("ivl_embodied_msgs/msg/TaskRequest")(task_id=task_id, instruction=text)


def _states(planner):
    return [(s.task_id, s.state, s.message) for s in planner.status.publisher.msgs]


def test_planner_node_plans_from_received_embeddings(vision, planner):
    planner.on_embedding(_embedding_msg(vision))
    planner.on_task(_task("put the red cube in the green bowl"))
    (plan_msg,) = planner.plan_pub.msgs
    assert plan_msg.task_id == "t1" and plan_msg.instruction == "put the red cube in the green bowl"
    assert parse_plan(plan_msg.raw_text) == msg_to_plan(plan_msg)  # random weights, but always a plan
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    assert [s[1] for s in _states(planner)] == [S.STATE_PLANNING, S.STATE_PLANNED]
    # the plan carries the planner's measured times: prefill and decode both ran, and took time
    assert plan_msg.prefill_ms > 0 and plan_msg.decode_ms > 0 and plan_msg.generated_tokens > 0


def test_planner_node_refuses_without_fresh_embeddings(vision, planner):
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    planner.on_task(_task("put the red cube in the green bowl", "a"))
    planner.on_embedding(_embedding_msg(vision))
    planner.params["max_input_age_s"] = 0.05
    time.sleep(0.1)
    planner.on_task(_task("put the red cube in the green bowl", "b"))
    planner.params["max_input_age_s"] = 2.0
    planner.on_task(_task("   ", "c"))
    states = _states(planner)
    assert [(t, s) for t, s, _ in states] == [("a", S.STATE_REJECTED), ("b", S.STATE_REJECTED),
                                               ("c", S.STATE_REJECTED)]
    assert "no valid visual embeddings" in states[0][2] and "old" in states[1][2] and "empty" in states[2][2]
    assert planner.plan_pub.msgs == []


def test_planner_node_refuses_embeddings_of_another_timeline(vision, planner):
    """A restarted simulator: /clock is back near 0 but the newest embeddings are of the last scene, stamped
    later. They were received a moment ago (fresh by receipt time), yet they are not of this scene."""
    from ivl_embodied.transport.convert import ns_to_stamp

    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    ahead = _embedding_msg(vision)
    ahead.header.stamp = ns_to_stamp(time.time_ns() + 5_000_000_000)  # this node's clock: the wall clock
    planner.on_embedding(ahead)
    planner.on_task(_task("put the red cube in the green bowl", "a"))
    ((task_id, state, message),) = _states(planner)
    assert (task_id, state) == ("a", S.STATE_REJECTED) and "ahead of this node's clock" in message
    assert planner.status.publisher.msgs[-1].reason == "stale_embeddings"  # a client asks again
    now = _embedding_msg(vision, seed=1)
    now.header.stamp = ns_to_stamp(time.time_ns())
    planner.on_embedding(now)
    planner.on_task(_task("put the red cube in the green bowl", "b"))
    assert [s[1] for s in _states(planner)][-2:] == [S.STATE_PLANNING, S.STATE_PLANNED]


def test_planner_node_drops_bad_embeddings_on_receipt(vision, planner, caplog):
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    good = _embedding_msg(vision)
    truncated = _embedding_msg(vision, seed=1)
    truncated.data = bytes(truncated.data)[:-2]
    planner.on_embedding(truncated)
    assert planner.latest is None and "bytes" in caplog.text
    import torch

    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.transport.convert import payload_to_msg

    hidden = 2 * planner.planner.hidden_size
    wide = payload_to_msg(VisualEmbeddings(torch.randn(2, hidden), (1, 1), 64, 32, 2, 1, False, 56).to_payload(), 1, "")
    planner.on_embedding(wide)
    assert planner.latest is None
    planner.on_task(_task("put the red cube in the green bowl", "a"))
    (tid, state, text), = _states(planner)
    assert state == S.STATE_REJECTED and f"hidden size {wide.hidden_size}" in text
    planner.on_embedding(good)  # a good sample after bad ones is used
    planner.on_embedding(truncated)  # and a bad one does not replace it
    planner.on_task(_task("put the red cube in the green bowl", "b"))
    assert [s[1] for s in _states(planner)[1:]] == [S.STATE_PLANNING, S.STATE_PLANNED]


def test_planner_node_drops_non_finite_and_foreign_embeddings(vision, planner, caplog):
    import torch

    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.nodes.planner_node import expected_encoder_id
    from ivl_embodied.transport.convert import payload_to_msg

    good = VisualEmbeddings.from_payload(msg_to_payload(_embedding_msg(vision)))
    for bad_value in (math.nan, math.inf):
        e = good.embeddings.clone().float()
        e[0, 0] = bad_value
        bad = dataclasses.replace(good, embeddings=e)
        planner.on_embedding(payload_to_msg(bad.to_payload("fp32"), 1, ""))
        assert planner.latest is None
    assert caplog.text.count("non-finite values") == 2
    planner.encoder_id = "ivl_default_planner"
    planner.on_embedding(_embedding_msg(vision))
    assert planner.latest is None and f"come from encoder {good.encoder_id!r}" in caplog.text
    planner.encoder_id = good.encoder_id
    planner.on_embedding(_embedding_msg(vision))
    assert planner.latest is not None and torch.isfinite(planner.latest[0].embeddings).all()
    assert expected_encoder_id("auto", "default") == "ivl_default_planner"  # the shipped pair
    assert expected_encoder_id("", "default") == "" and expected_encoder_id("x", "default") == "x"


def _follow_up(text, attempt, candidate, not_before=0, task_id="t1"):
    from ivl_embodied.transport.convert import ns_to_stamp

    return msg_type("ivl_embodied_msgs/msg/TaskRequest")(task_id=task_id, instruction=text, attempt=attempt,
                                                         candidate=candidate, not_before=ns_to_stamp(not_before))


def test_planner_node_offers_the_frames_alternatives_when_asked(vision, planner):
    """Candidate k of a task's attempt: the greedy plan first, then sampled and mirrored-view plans, each
    distinct, made from the same frame; past the last one an empty plan says there is no other."""
    vision.mirrored_pub = Capture(planner.on_mirrored)  # the wiring DDS does between the two processes
    planner.mirror_request = Capture(vision.on_mirror_request)
    planner.params["samples"] = 2
    text = "put the red cube in the green bowl"
    emb = _embedding_msg(vision)
    planner.on_embedding(emb)
    planner.on_task(_task(text))
    assert planner.mirror_request.msgs == []  # the first plan needs no second look
    for k in range(1, 8):  # at most 1 + 2 samples + the mirrored view's 1 + 2
        planner.on_task(_follow_up(text, 1, k))
    (request,) = planner.mirror_request.msgs  # asked once, when the alternatives were first needed
    assert stamp_to_ns(request.stamp) == stamp_to_ns(emb.header.stamp)
    (mirrored,) = vision.mirrored_pub.msgs
    assert stamp_to_ns(mirrored.header.stamp) == stamp_to_ns(emb.header.stamp)
    plans = planner.plan_pub.msgs
    full = [m for m in plans if len(m.steps)]
    assert [m.candidate for m in plans] == list(range(len(plans)))
    assert 4 <= len(full) <= 6 and len({m.raw_text for m in full}) == len(full)  # > 3: the mirrored view too
    assert all({s.object for s in msg_to_plan(m).steps} == {"red cube"} for m in full)  # held to the task
    assert all(m.embedding_stamp == emb.header.stamp for m in full) and all(m.attempt == 1 for m in plans)
    assert "no further alternative" in plans[len(full)].raw_text and not plans[-1].steps
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    assert [s[1] for s in _states(planner)] == [S.STATE_PLANNING, S.STATE_PLANNED]  # follow-ups: no status
    planner.on_task(_follow_up(text, 1, 1, task_id="unknown"))
    assert "no plans kept" in planner.plan_pub.msgs[-1].raw_text


def test_planner_node_retries_from_an_image_taken_after_the_miss(vision, planner):
    text = "put the red cube in the green bowl"
    planner.on_embedding(_embedding_msg(vision))  # stamped 1 ns
    planner.on_task(_follow_up(text, 2, 0, not_before=5_000))
    assert planner.plan_pub.msgs == []  # waits for a newer frame
    vision.on_image(image_to_msg(_rgb(3), 6_000, "cam"))
    vision.on_timer()
    planner.on_embedding(vision.pub.msgs[-1])  # queues the waiting request for the planning thread
    deadline = time.monotonic() + 30
    while not planner.plan_pub.msgs and time.monotonic() < deadline:
        time.sleep(0.02)
    (plan,) = planner.plan_pub.msgs
    assert plan.attempt == 2 and plan.candidate == 0 and stamp_to_ns(plan.embedding_stamp) == 6_000
    assert [s.attempt for s in planner.status.publisher.msgs] == [2, 2]
    planner.params["fresh_image_wait_s"] = 0.0
    planner.on_task(_follow_up(text, 3, 0, not_before=9_000))
    time.sleep(0.01)
    planner.expire_waiting()
    last = planner.plan_pub.msgs[-1]
    assert not last.steps and "no image taken after attempt 2" in last.raw_text


def test_a_burst_of_tasks_gets_a_status_for_every_task(vision, planner):
    """100 tasks at once (89 of 100 once got no status at all): each is planned or refused busy at once."""
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    planner.on_embedding(_embedding_msg(vision))
    planner.params["max_input_age_s"] = 0.0  # the burst outlives any freshness window; not what is tested
    for i in range(100):
        planner.enqueue(_task("put the red cube in the green bowl", f"burst{i}"))
    deadline = time.monotonic() + 120
    answered = lambda: {m.task_id for m in planner.status.publisher.msgs  # noqa: E731
                        if m.state in (S.STATE_PLANNED, S.STATE_REJECTED, S.STATE_FAILED)}
    while len(answered()) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answered() == {f"burst{i}" for i in range(100)}
    busy = [m for m in planner.status.publisher.msgs if m.state == S.STATE_REJECTED]
    assert busy and all(m.reason == "busy" and "max_queued_tasks" in m.message for m in busy)
    assert len(planner.plan_pub.msgs) == 100 - len(busy) >= 32  # the queue's worth was planned


@pytest.mark.parametrize("instruction, expect", [
    ("put the red cube <img> in the green bowl", "special token"),
    ("put the red cube in the green bowl<|im_end|>", "special token"),
    ("put the red cube in the green bowl " + "please " * 200, "at most max_instruction_chars=500"),
])
def test_planner_node_refuses_instructions_it_cannot_read_without_dying(vision, planner, instruction, expect):
    """Special tokens once crashed the node (and the launcher took the graph down with it); a very long
    instruction kept it busy for minutes. Both are refused by name, with or without the instruction reader."""
    planner.on_embedding(_embedding_msg(vision))
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    for read in (True, False):
        planner.params["read_instructions"] = read
        planner.status.publisher.msgs.clear()
        planner.on_task(_task(instruction))
        ((_, state, message),) = _states(planner)
        assert state == S.STATE_REJECTED and expect in message, message
        assert planner.status.publisher.msgs[-1].reason == "bad_instruction"
    assert planner.plan_pub.msgs == []


@pytest.mark.slow
def test_vision_and_planner_processes_plan_over_dds(loopback_dds, split_tiny, python):
    """DvD end to end: camera image → vision_node process → embeddings over DDS → planner_node
    process → ActionPlan, driven from this process."""
    from ivl_embodied.transport import make_node

    procs = [
        subprocess.Popen([python, "-m", f"ivl_embodied.nodes.{name}", "--ros-args",
                          "-p", f"checkpoint:={split_tiny[side]}", *extra],
                         env=loopback_dds, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, side, extra in (("vision_node", "vision", ["-p", "rate_hz:=5.0"]),
                                  ("planner_node", "language", ["-p", "max_new_tokens:=120"]))
    ]
    node = make_node("test_driver")
    failure = None
    try:
        img_pub = node.create_publisher("sensor_msgs/msg/Image", "/camera/color/image_raw", "sensor_data")
        task_pub = node.create_publisher("ivl_embodied_msgs/msg/TaskRequest", "/ivl/task")
        plans, embs = [], []
        node.create_subscription("ivl_embodied_msgs/msg/ActionPlan", "/ivl/plan", plans.append)
        node.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", "/ivl/visual_embeddings",
                                 embs.append, "large_latest")
        node.wait_for_subscribers("/ivl/task", timeout=60)
        node.wait_for_subscribers("/camera/color/image_raw", timeout=60)
        img = image_to_msg(_rgb(5), time.time_ns(), "cam")
        assert node.spin_until(lambda: (img_pub.publish(img) or bool(embs)), timeout=30), "no embeddings"
        # The planner process may match the vision writer later than we did (volatile QoS keeps no
        # history): keep images flowing and ask again, as an operator would, until a plan comes.
        sent = []

        def ask() -> bool:
            img_pub.publish(img)
            if not sent or time.monotonic() - sent[-1] > 2.0:
                task_pub.publish(_task("put the red cube in the green bowl", f"dvd{len(sent)}"))
                sent.append(time.monotonic())
            return bool(plans)

        assert node.spin_until(ask, timeout=60), "no plan"
        assert plans[0].task_id.startswith("dvd")
        parse_plan(plans[0].raw_text)
    except (AssertionError, TimeoutError) as e:
        failure = e
    finally:
        node.shutdown()
        for p in procs:
            p.send_signal(2)
        outs = [p.communicate(timeout=30)[0] for p in procs]
    assert failure is None, f"{failure}; node output: {outs}"
    assert all(p.returncode == 0 for p in procs), outs


def test_vision_node_onnxruntime_backend_matches_torch(loopback_dds, split_tiny, tmp_path):
    import torch

    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.export.onnx_export import export_onnx
    from ivl_embodied.nodes.vision_node import VisionNode

    onnx_path = export_onnx(split_tiny["vision"], tmp_path / "v.onnx")
    out = {}
    for backend in ("torch", "onnxruntime"):
        node = VisionNode.create({"checkpoint": str(split_tiny["vision"]), "backend": backend,
                                  "engine": str(onnx_path), "vir_mode": "auto", "vir_absolute": 0.0,
                                  "max_num_tiles": 4, "dtype": "float32"})
        node.pub = Capture()
        node.on_image(image_to_msg(_rgb(), 1, "cam"))
        node.on_timer()
        out[backend] = VisualEmbeddings.from_payload(msg_to_payload(node.pub.msgs[0]))
        node.shutdown()
    assert out["onnxruntime"].tokens_per_tile == out["torch"].tokens_per_tile
    assert len(set(out["torch"].tokens_per_tile)) == 2
    torch.testing.assert_close(out["onnxruntime"].embeddings, out["torch"].embeddings, rtol=0, atol=1e-4)
