"""Backends give the same VisualEmbeddings: torch vs onnxruntime, all ViR modes; factory errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from ivl_embodied.runtime import BackendUnavailableError, make_vision_backend
from ivl_embodied.runtime.base import assemble_embeddings
from ivl_embodied.runtime.meta import GraphMeta
from ivl_embodied.runtime.ort_backend import ort_providers
from ivl_embodied.vision.tiling import Tiles, TilingConfig, tile_image
from ivl_embodied.vision.vir import ViRPolicy

ATOL_FP32 = 1e-4


def _tiles(w=168, h=112, seed=0, max_tiles=6):
    img = np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)
    return tile_image(img, TilingConfig(tile_size=56, max_tiles=max_tiles))


@pytest.fixture(scope="module")
def flash_pair(tiny_flash_ckpt, flash_onnx):
    return make_vision_backend("torch", tiny_flash_ckpt), make_vision_backend("onnxruntime", flash_onnx)


@pytest.mark.parametrize(
    "policy",
    [ViRPolicy("full"), ViRPolicy("compressed"), ViRPolicy("auto", relative=0.5),
     ViRPolicy("auto", relative=0.0, absolute=0.5)],
    ids=["full", "compressed", "auto-median", "auto-absolute"],
)
def test_onnxruntime_encode_equals_torch_encode(flash_pair, policy):
    torch_b, ort_b = flash_pair
    tiles = _tiles()
    assert tiles.num_tiles == 7  # 3x2 grid + thumbnail
    ref, got = torch_b.encode(tiles, policy), ort_b.encode(tiles, policy)
    assert got.tokens_per_tile == ref.tokens_per_tile
    if policy.mode == "auto" and policy.absolute == 0.0:
        assert set(ref.tokens_per_tile) == {1, 4}, "median routing should mix 64- and 256-style blocks"
    if policy.mode == "compressed":
        assert ref.tokens_per_tile == (1,) * 7
    torch.testing.assert_close(got.embeddings, ref.embeddings, rtol=0, atol=ATOL_FP32)
    for field in ("source_width", "source_height", "grid_cols", "grid_rows", "has_thumbnail", "tile_size",
                  "encoder_id"):
        assert getattr(got, field) == getattr(ref, field), field
    assert got.to_payload("bf16").keys() == ref.to_payload("bf16").keys()


@pytest.mark.parametrize("n_frames", [1, 3])
def test_onnxruntime_dynamic_batch_through_encode(flash_pair, n_frames):
    from ivl_embodied.vision.tiling import tile_frames

    frames = [np.full((40, 60, 3), 30 * i, dtype=np.uint8) for i in range(n_frames)]
    tiles = tile_frames(frames, TilingConfig(tile_size=56))
    ref, got = (b.encode(tiles, ViRPolicy("auto")) for b in flash_pair)
    assert got.tokens_per_tile == ref.tokens_per_tile and len(got.tokens_per_tile) == n_frames
    torch.testing.assert_close(got.embeddings, ref.embeddings, rtol=0, atol=ATOL_FP32)


def test_plain_checkpoint_refuses_vir_modes_on_every_backend(tiny_ckpt, plain_onnx):
    backends = [make_vision_backend("torch", tiny_ckpt), make_vision_backend("onnxruntime", plain_onnx)]
    tiles = _tiles()
    for b in backends:
        assert b.with_vir is False and b.tile_size == 56
        with pytest.raises(ValueError, match="'auto' needs a Flash/ViR checkpoint"):
            b.encode(tiles, ViRPolicy("auto"))
    a, c = (b.encode(tiles) for b in backends)  # default policy: full
    assert a.tokens_per_tile == c.tokens_per_tile == (4,) * 7
    torch.testing.assert_close(c.embeddings, a.embeddings, rtol=0, atol=ATOL_FP32)


def test_wrong_tile_size_and_closed_backend(flash_onnx):
    b = make_vision_backend("onnxruntime", flash_onnx)
    bad = Tiles(torch.zeros(1, 3, 112, 112), 1, 1, False, 112, 112, 112)
    with pytest.raises(ValueError, match="112 px"):
        b.encode(bad)
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.encode(_tiles())


def test_assemble_keeps_tile_order_and_routes_by_rule():
    meta = GraphMeta(tile_size=56, vision_hidden_size=8, text_hidden_size=2, tokens_full=4,
                     tokens_compressed=1, with_vir=True, encoder_id="x")
    tiles = Tiles(torch.zeros(5, 3, 56, 56), 2, 2, True, 100, 100, 56)
    full = torch.arange(5.0).view(5, 1, 1).expand(5, 4, 2)  # tile i's full block is all i
    comp = -torch.arange(5.0).view(5, 1, 1).expand(5, 1, 2)  # tile i's compressed block is all -i
    p = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    emb = assemble_embeddings(tiles, ViRPolicy("auto", relative=0.5), meta, full, p, comp)
    assert emb.tokens_per_tile == (4, 1, 4, 1, 4)  # above the median: tiles 1 and 3
    assert emb.embeddings[:, 0].tolist() == [0] * 4 + [-1] + [2] * 4 + [-3] + [4] * 4
    assert emb.encoder_id == "x" and emb.has_thumbnail
    with pytest.raises(RuntimeError, match=r"\(5, 4, 2\)"):
        assemble_embeddings(tiles, None, meta, full[:, :3], p, comp)


def test_factory_errors(tmp_path, tiny_flash_ckpt, flash_onnx):
    with pytest.raises(ValueError, match="'openvino'"):
        make_vision_backend("openvino", flash_onnx)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        make_vision_backend("onnxruntime", tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="takes a .onnx file"):
        make_vision_backend("onnxruntime", tiny_flash_ckpt)
    with pytest.raises(ValueError, match="takes a checkpoint directory"):
        make_vision_backend("torch", flash_onnx)
    with pytest.raises(ValueError, match="'gpu'"):
        make_vision_backend("onnxruntime", flash_onnx, device="gpu")
    with pytest.raises(ValueError, match="could not load .*junk.onnx"):
        bad = tmp_path / "junk.onnx"
        bad.write_bytes(b"not an onnx model")
        make_vision_backend("onnxruntime", bad)


def test_tensorrt_backend_without_tensorrt_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    engine = tmp_path / "vision.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(BackendUnavailableError, match="TensorRT 10's Python package") as e:
        make_vision_backend("tensorrt", engine)
    assert "onnxruntime" in str(e.value) and "JetPack" in str(e.value)
    assert isinstance(e.value, ImportError)


def test_ort_providers():
    assert ort_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers("cuda:1", avail) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert ort_providers("tensorrt", avail)[:2] == [
        ("TensorrtExecutionProvider", {"device_id": 0}), ("CUDAExecutionProvider", {"device_id": 0})]
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        ort_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="'cuda:x'"):
        ort_providers("cuda:x", avail)
