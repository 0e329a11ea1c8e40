"""DvD: split a transformers-saved tiny InternVL3.5, run vision and language in separate
processes with the embeddings passed as payload bytes, and match transformers' own logits."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import InternVLForConditionalGeneration

REPO = Path(__file__).resolve().parents[2]
INSTRUCTION = "put the red cube in the green bowl"
BF16_ATOL = 2e-3  # bf16 payload (8-bit mantissa): measured 1.4e-4 max |dlogit| at logit scale ~1.1

VISION_SIDE = """
import pickle, sys, numpy as np, torch
torch.set_num_threads(1)
from ivl_embodied.vision.encoder import encode_image
from ivl_embodied.checkpoints.internvl import load_vision
enc = load_vision(sys.argv[1])
emb = encode_image(enc, np.load(sys.argv[2]))
with open(sys.argv[3], "wb") as f:
    pickle.dump({"fp32": emb.to_payload("fp32"), "bf16": emb.to_payload("bf16")}, f)
"""

LANGUAGE_SIDE = """
import pickle, sys, torch
torch.set_num_threads(1)
from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.checkpoints.internvl import load_language
planner = load_language(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    payloads = pickle.load(f)
out = {}
for name, payload in payloads.items():
    vis = VisualEmbeddings.from_payload(payload)
    out[name] = planner.next_token_logits(vis.embeddings.float(), sys.argv[4])
    out[name + "_ids"] = planner.prompt_ids(vis.embeddings, sys.argv[4])
torch.save(out, sys.argv[3])
"""


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def split_dirs(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    stdout = _run(["-m", "ivl_embodied.cli", "checkpoint", "split", str(tiny_ckpt),
                   "--vision-out", str(out / "vision"), "--language-out", str(out / "language")], REPO)
    assert json.loads(stdout.strip().splitlines()[-1]) == {"vision": str(out / "vision"),
                                                             "language": str(out / "language")}
    return out / "vision", out / "language"


def test_split_dirs_are_self_contained(split_dirs):
    vision, language = split_dirs
    with safe_open(str(vision / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.split(".")[0] in ("vision_tower", "multi_modal_projector") for k in keys)
    assert (vision / "vision_config.json").is_file() and not (vision / "tokenizer.json").exists()
    assert (language / "tokenizer.json").is_file() and (language / "ivl_language.json").is_file()
    assert json.loads((language / "config.json").read_text())["model_type"] == "qwen3"
    from ivl_embodied.checkpoints.internvl import load_language, load_vision

    with pytest.raises(ValueError, match="language-only"):
        load_vision(language)
    with pytest.raises(ValueError, match="vision-only"):
        load_language(vision)


def test_two_process_pipeline_matches_transformers(tiny_ckpt, split_dirs, tmp_path):
    vision, language = split_dirs
    image = np.random.RandomState(7).randint(0, 256, (120, 260, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    _run(["-c", VISION_SIDE, str(vision), str(tmp_path / "image.npy"), str(tmp_path / "payload.pkl")], tmp_path)
    _run(["-c", LANGUAGE_SIDE, str(language), str(tmp_path / "payload.pkl"), str(tmp_path / "logits.pt"),
          INSTRUCTION], tmp_path)
    got = torch.load(tmp_path / "logits.pt")
    with open(tmp_path / "payload.pkl", "rb") as f:
        payload = pickle.load(f)["bf16"]
    assert isinstance(payload["data"], bytes) and payload["dtype"] == 0

    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    tiles = tile_image(image, TilingConfig(tile_size=56))
    assert payload["tokens_per_tile"] == [4] * tiles.num_tiles
    ref = InternVLForConditionalGeneration.from_pretrained(tiny_ckpt, local_files_only=True).eval()
    ids = torch.tensor([got["fp32_ids"]])
    assert int((ids == ref.config.image_token_id).sum()) == 4 * tiles.num_tiles
    with torch.no_grad():
        want = ref(input_ids=ids, pixel_values=tiles.pixel_values).logits[0, -1]
    torch.testing.assert_close(got["fp32"], want, rtol=0, atol=1e-5)
    err = (got["bf16"] - want).abs().max().item()
    assert err < BF16_ATOL, err
    assert err > 0  # bf16 really was on the wire


def test_loader_refuses_remote_code_and_missing_dirs(tiny_ckpt, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_language, load_vision

    with pytest.raises(ValueError, match="trust_remote_code"):
        load_vision(tiny_ckpt, trust_remote_code=True)
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_language(tiny_ckpt, trust_remote_code=True)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_vision(tmp_path / "OpenGVLab/InternVL3_5-1B-HF")


def test_flash_checkpoint_split_keeps_vir(tiny_flash_ckpt, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_vision, split_checkpoint
    from ivl_embodied.vision.vir import ViRPolicy

    v, _ = split_checkpoint(tiny_flash_ckpt, tmp_path / "v", tmp_path / "l")
    a, b = load_vision(tiny_flash_ckpt), load_vision(v)
    assert a.config.with_vir and b.config.with_vir
    px = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        ea, ta = a(px, ViRPolicy("auto"))
        eb, tb = b(px, ViRPolicy("auto"))
    assert ta == tb and torch.equal(ea, eb)


def test_inspect_cli_reports_both_halves(tiny_flash_ckpt, capsys):
    import argparse

    from ivl_embodied.checkpoints import cli as checkpoint_cli

    parser = argparse.ArgumentParser()
    checkpoint_cli.add_arguments(parser)
    assert checkpoint_cli.run(parser.parse_args(["inspect", str(tiny_flash_ckpt)])) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "internvl" and info["vision"]["vir"] is True
    assert info["vision"]["tokens_per_tile"] == 4 and info["language"]["hidden_size"] == 64
    assert info["language"]["class"] == "Qwen3ForCausalLM"


def test_bench_tiny_reports_positive_figures():
    from ivl_embodied.bench.model import bench_config

    r = bench_config("tiny")
    assert r["tokens_per_tile"] == 256 and r["prefill_tokens"] == 304
    assert r["vision_ms_per_tile"] > 0 and r["prefill_ms"] > 0 and r["decode_tokens_per_s"] > 0
