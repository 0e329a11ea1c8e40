"""DvD with real message bytes: a vision_node process publishes ``VisualEmbedding`` over DDS;
this process, holding only the language side, gets the same next-token logits as
transformers' own ``InternVLForConditionalGeneration`` forward on the same image and prompt."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
import torch

from ivl_embodied.transport.convert import image_to_msg, msg_to_payload

INSTRUCTION = "put the red cube in the green bowl"
BF16_ATOL = 2e-3  # same bound as tests/model/test_model_split_parity.py


@pytest.fixture(scope="module")
def split_plain(tmp_path_factory):
    from ivl_embodied.checkpoints.internvl import split_checkpoint
    from ivl_embodied.checkpoints.tiny import save_tiny_internvl

    root = tmp_path_factory.mktemp("dvd_plain")
    src = save_tiny_internvl(root / "full", seed=11, tile_size=56)
    v, lang = split_checkpoint(src, root / "vision", root / "language")
    return src, v, lang


@pytest.mark.slow
@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("bfloat16", BF16_ATOL)])
def test_logits_from_dds_embeddings_match_transformers(loopback_dds, split_plain, python, dtype, atol):
    from transformers import InternVLForConditionalGeneration

    from ivl_embodied.checkpoints.internvl import load_language
    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.transport import make_node
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    full, vision_dir, language_dir = split_plain
    proc = subprocess.Popen(
        [python, "-m", "ivl_embodied.nodes.vision_node", "--ros-args", "-p", f"checkpoint:={vision_dir}",
         "-p", f"dtype:={dtype}", "-p", "vir_mode:=all256", "-p", "max_num_tiles:=6", "-p", "rate_hz:=5.0"],
        env=loopback_dds, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = make_node("language_side")
    image = np.random.default_rng(4).integers(0, 256, (130, 250, 3), dtype=np.uint8)
    got = []
    try:
        pub = node.create_publisher("sensor_msgs/msg/Image", "/camera/color/image_raw", "sensor_data")
        node.create_subscription("ivl_embodied_msgs/msg/VisualEmbedding", "/ivl/visual_embeddings",
                                 got.append, "large_latest")
        node.wait_for_subscribers("/camera/color/image_raw", timeout=60)
        msg = image_to_msg(image, time.time_ns(), "cam")
        assert node.spin_until(lambda: pub.publish(msg) or bool(got), timeout=60), "no embeddings"
    finally:
        node.shutdown()
        proc.send_signal(2)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out

    visual = VisualEmbeddings.from_payload(msg_to_payload(got[0]))
    assert visual.embeddings.dtype == {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    planner = load_language(language_dir)
    logits = planner.next_token_logits(visual.embeddings.float(), INSTRUCTION)
    ids = torch.tensor([planner.prompt_ids(visual.embeddings, INSTRUCTION)])

    ref = InternVLForConditionalGeneration.from_pretrained(full, local_files_only=True).eval()
    tiles = tile_image(image, TilingConfig(tile_size=56, max_tiles=6))
    assert list(got[0].tokens_per_tile) == [4] * tiles.num_tiles
    with torch.no_grad():
        want = ref(input_ids=ids, pixel_values=tiles.pixel_values).logits[0, -1]
    err = (logits - want).abs().max().item()
    assert err <= atol, err
