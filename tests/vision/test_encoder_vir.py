"""Vision encoder == transformers' InternVL image features; ViR routing rule and token counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import InternVLForConditionalGeneration
from transformers.models.internvl.modeling_internvl import InternVLModel

from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.vision.encoder import encode_image, pixel_shuffle
from ivl_embodied.vision.vir import ViRPolicy, route_tiles

INSTRUCTION = "put the red cube in the green bowl"


def _image(w=200, h=90, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("scale", [0.5, 0.25])
def test_pixel_shuffle_matches_transformers(scale):
    x = torch.randn(3, 8, 8, 6)  # [B, W, H, C]
    ref = InternVLModel.pixel_shuffle(None, x, scale_factor=scale)
    out = pixel_shuffle(x, scale)
    assert out.shape == (3, int(8 * scale), int(8 * scale), int(6 / scale**2))
    assert torch.equal(out, ref)


def test_encoder_matches_transformers_image_features(tiny_ckpt, tiny_encoder):
    ref = InternVLForConditionalGeneration.from_pretrained(tiny_ckpt, local_files_only=True).eval()
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    emb = encode_image(tiny_encoder, _image())
    tiles = tile_image(_image(), TilingConfig(tile_size=56))
    assert tiles.num_tiles > 1
    assert emb.tokens_per_tile == (4,) * tiles.num_tiles  # 56-px tiles: 4x4 patches -> 2x2 tokens
    with torch.no_grad():
        feats = ref.model.get_image_features(pixel_values=tiles.pixel_values).pooler_output  # [N, T, D]
    torch.testing.assert_close(emb.embeddings, feats.reshape(-1, feats.shape[-1]), rtol=0, atol=1e-6)
    assert (emb.grid_cols, emb.grid_rows, emb.has_thumbnail) == (tiles.grid_cols, tiles.grid_rows, True)
    assert (emb.source_width, emb.source_height, emb.tile_size) == (200, 90, 56)


def test_route_rule_relative_and_absolute():
    p = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    # median 0.5: strictly above -> 0.9, 0.7
    assert route_tiles(p, ViRPolicy("auto", relative=0.5)).tolist() == [False, True, False, True, False]
    # absolute 0.8 also required
    assert route_tiles(p, ViRPolicy("auto", relative=0.5, absolute=0.8)).tolist() == [False, True, False, False, False]
    # relative 0 -> everything above the minimum
    assert route_tiles(p, ViRPolicy("auto", relative=0.0)).tolist() == [False, True, True, True, True]
    assert not route_tiles(p, ViRPolicy("auto", relative=1.0)).any()
    assert route_tiles(p, ViRPolicy("compressed")).all() and not route_tiles(p, ViRPolicy("full")).any()
    # one tile: the router's own decision (p >= 0.5), or a stricter absolute threshold
    assert route_tiles(torch.tensor([0.7]), ViRPolicy("auto")).tolist() == [True]
    assert route_tiles(torch.tensor([0.4]), ViRPolicy("auto")).tolist() == [False]
    assert route_tiles(torch.tensor([0.7]), ViRPolicy("auto", absolute=0.8)).tolist() == [False]
    with pytest.raises(ValueError, match="'sometimes'"):
        ViRPolicy("sometimes")
    with pytest.raises(ValueError, match="1.5"):
        ViRPolicy(relative=1.5)


def test_vir_tokens_follow_router(flash_encoder, tiny_planner):
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    tiles = tile_image(_image(seed=3), TilingConfig(tile_size=56))
    policy = ViRPolicy("auto", relative=0.3, absolute=0.0)
    emb = flash_encoder.encode(tiles, policy)
    with torch.no_grad():
        grid = flash_encoder.vit_features(tiles.pixel_values)  # [N, 4, 4, C]
        probs = flash_encoder.vision_router(grid.reshape(grid.shape[0], 16, -1))  # [N, 2]
        full = flash_encoder.project_full(grid)  # [N, 4, D]
        comp = flash_encoder.project_compressed(grid)  # [N, 1, D]
    expect = route_tiles(probs[:, 1], policy)
    assert 0 < int(expect.sum()) < tiles.num_tiles  # a real mix
    assert emb.tokens_per_tile == tuple(1 if c else 4 for c in expect.tolist())
    blocks = [comp[i] if c else full[i] for i, c in enumerate(expect.tolist())]  # tile order kept
    torch.testing.assert_close(emb.embeddings, torch.cat(blocks), rtol=0, atol=1e-6)  # per-tile vs batched matmul
    # the prompt's placeholder count equals embedding rows, whatever the routing
    for mode in ("auto", "full", "compressed"):
        e = flash_encoder.encode(tiles, ViRPolicy(mode, relative=0.3))
        ids = tiny_planner.prompt_ids(e, INSTRUCTION)
        assert ids.count(tiny_planner.image_token_id) == e.num_tokens == sum(e.tokens_per_tile)


def test_forced_compression_cuts_visual_tokens_by_75_percent(flash_encoder, tiny_planner):
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    tiles = tile_image(_image(), TilingConfig(tile_size=56))
    full = flash_encoder.encode(tiles, ViRPolicy("full"))
    comp = flash_encoder.encode(tiles, ViRPolicy("compressed"))
    n_full = tiny_planner.prompt_ids(full, INSTRUCTION).count(tiny_planner.image_token_id)
    n_comp = tiny_planner.prompt_ids(comp, INSTRUCTION).count(tiny_planner.image_token_id)
    assert n_comp * 4 == n_full and n_full == 4 * tiles.num_tiles


def test_both_vir_paths_are_differentiable(flash_encoder):
    pixels = torch.randn(3, 3, 56, 56)
    flash_encoder.zero_grad()
    grid = flash_encoder.vit_features(pixels)  # [3, 4, 4, C]
    probs = flash_encoder.vision_router(grid.reshape(3, 16, -1))  # [3, 2]
    loss = flash_encoder.project_full(grid).square().mean() + flash_encoder.project_compressed(grid).square().mean()
    (loss + probs[:, 1].sum()).backward()
    for mod in (flash_encoder.multi_modal_projector, flash_encoder.mlp2, flash_encoder.vision_router):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters() if p.requires_grad)
    flash_encoder.zero_grad()


def test_vir_needs_flash_weights(tiny_encoder):
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    tiles = tile_image(_image(), TilingConfig(tile_size=56))
    with pytest.raises(ValueError, match="'compressed' needs a Flash"):
        tiny_encoder.encode(tiles, ViRPolicy("compressed"))
    with pytest.raises(ValueError, match="tiles are 112 px"):
        tiny_encoder.encode(tile_image(_image(), TilingConfig(tile_size=112)))


def test_payload_roundtrip_and_errors():
    emb = VisualEmbeddings(torch.randn(6, 8), (4, 1, 1), 640, 480, 2, 1, True, 448, "enc")
    p32 = emb.to_payload("fp32")
    assert p32["dtype"] == 2 and len(p32["data"]) == 6 * 8 * 4 and p32["hidden_size"] == 8
    assert p32["data"] == emb.embeddings.numpy().astype("<f4").tobytes()
    back = VisualEmbeddings.from_payload(p32)
    assert torch.equal(back.embeddings, emb.embeddings) and back.tokens_per_tile == (4, 1, 1)
    pbf = emb.to_payload("bf16")
    assert pbf["dtype"] == 0 and len(pbf["data"]) == 6 * 8 * 2
    assert torch.equal(VisualEmbeddings.from_payload(pbf).embeddings, emb.embeddings.to(torch.bfloat16))
    assert torch.equal(VisualEmbeddings.from_payload(emb.to_payload("fp16")).embeddings, emb.embeddings.half())
    bad = dict(p32, data=p32["data"][:-4])
    with pytest.raises(ValueError, match="188 bytes"):
        VisualEmbeddings.from_payload(bad)
    with pytest.raises(ValueError, match="dtype code 7"):
        VisualEmbeddings.from_payload(dict(p32, dtype=7))
    with pytest.raises(ValueError, match=r"sums to 5 but embeddings have 6"):
        VisualEmbeddings(torch.randn(6, 8), (4, 1), 1, 1, 2, 1, False, 448)
