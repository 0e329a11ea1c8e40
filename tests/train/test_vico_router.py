"""ViCO consistency training and ViR router training on a tiny random planner (56-px tiles)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from ivl_embodied.train import router as router_stage
from ivl_embodied.train import vico as vico_stage
from ivl_embodied.train.config import ModelConfig
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.losses import router_labels
from ivl_embodied.train.router import RouterModel, tile_losses
from ivl_embodied.train.vico import ViCOModel, load_vir_planner

_TINY = dict(tile_size=56, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=1,
             text_heads=4, text_kv_heads=2, vocab_size=400)


@pytest.fixture(scope="module")
def tiny_planner(tiny_data, tmp_path_factory):
    """A random (untrained) planner without ViR parts, in the planner layout."""
    from ivl_embodied.train.sft import SFTModel, build_planner_modules, save_planner
    from ivl_embodied.train.tokenizer import train_planner_tokenizer

    data_dir, _ = tiny_data
    tok = train_planner_tokenizer(PlanDataset(data_dir).corpus(), _TINY["vocab_size"])
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("planner")
    save_planner(SFTModel(*build_planner_modules(ModelConfig(**_TINY), tok)), out)
    return out


def _batch(ds: PlanDataset, idx: list[int]) -> dict:
    return {"pixel_values": ds.pixel_values(idx), "instructions": [ds.examples[i].instruction for i in idx],
            "plans": [ds.examples[i].plan for i in idx]}


def _stage(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


@pytest.mark.parametrize("train_llm", [False, True])
def test_vico_reduces_consistency_kl_without_touching_the_reference(tiny_data, tiny_planner, train_llm):
    data_dir, _ = tiny_data
    ds = PlanDataset(data_dir)
    encoder, planner, _ = load_vir_planner(tiny_planner, seed=0)
    model = ViCOModel(encoder, planner, ds.tiles_per_image, compress_prob=1.0, train_llm=train_llm)
    reference = model.ref_planner if train_llm else model.planner
    frozen = {**{f"vit.{k}": v for k, v in encoder.vision_tower.named_parameters()},
              **{f"mlp1.{k}": v for k, v in encoder.multi_modal_projector.named_parameters()},
              **{f"ref.{k}": v for k, v in reference.named_parameters()}}
    before = {k: v.detach().clone() for k, v in frozen.items()}
    batch = _batch(ds, [0, 1, 2, 3])
    llm = [p for p in planner.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": list(encoder.mlp2.parameters()), "lr": 1e-2}, {"params": llm, "lr": 1e-4}])
    kls = []
    for _ in range(12):
        loss, metrics = model(batch)
        loss.backward()
        assert all(p.grad is None for p in frozen.values()), "gradient reached the reference / frozen parts"
        assert any(float(p.grad.abs().sum()) > 0 for p in encoder.mlp2.parameters())
        if train_llm:
            assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in planner.parameters())
        opt.step()
        opt.zero_grad(set_to_none=True)
        kls.append(metrics["kl"])
    with torch.no_grad():
        final = model(batch)[1]["kl"]
    # a random LM barely looks at the image (KL ~1e-4, floor ~6e-5 from the shorter prompt), yet
    # 12 steps cut it by more than a third; the wrong sign would raise it
    assert final < 0.65 * kls[0], kls + [final]
    print(f"ViCO train_llm={train_llm}: KL {kls[0]:.4f} -> {final:.4f} in {len(kls)} steps")
    assert all(torch.equal(before[k], v) for k, v in frozen.items())


def test_fresh_vir_parts_are_seeded(tiny_planner):
    a, _, _ = load_vir_planner(tiny_planner, seed=3)
    b, _, _ = load_vir_planner(tiny_planner, seed=3)
    assert a.config.with_vir
    assert all(torch.equal(x, y) for x, y in zip(a.mlp2.parameters(), b.mlp2.parameters(), strict=True))


def test_vico_then_router_cli_save_flash_checkpoints(tiny_data, tiny_planner, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_vision
    from ivl_embodied.vision.tiling import TilingConfig, tile_image
    from ivl_embodied.vision.vir import ViRPolicy

    data_dir, _ = tiny_data
    loop = ["--data", str(data_dir), "--batch-size", "2", "--holdout", "3", "--log-interval", "1",
            "--warmup-steps", "1", "--device", "cpu", "--no-progress", "--eval-interval", "1000",
            "--checkpoint-interval", "1000"]
    vico_out = tmp_path / "vico"
    assert _stage(vico_stage, ["--init", str(tiny_planner), "--out", str(vico_out), "--steps", "3", *loop]) == 0
    enc = load_vision(vico_out / "vision")
    assert enc.config.with_vir
    init = load_vision(tiny_planner / "vision")
    for name in ("vision_tower", "multi_modal_projector"):  # frozen in ViCO
        a, b = getattr(enc, name).state_dict(), getattr(init, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    ds = PlanDataset(data_dir)
    tiles = tile_image(ds.images[0, 0].numpy(), TilingConfig(tile_size=56, max_tiles=1))
    emb = enc.encode(tiles, ViRPolicy("compressed"))
    assert emb.tokens_per_tile == (enc.config.tokens_compressed,) * tiles.num_tiles
    with torch.no_grad():
        expect = enc.project_compressed(enc.vit_features(tiles.pixel_values))  # [N, T64, D]
    torch.testing.assert_close(emb.embeddings, expect.reshape(-1, expect.shape[-1]))
    assert json.loads((vico_out / "vision" / "ivl_planner.json").read_text())["trained_by"] == "ivl-embodied train vico"

    router_out = tmp_path / "router"
    assert _stage(router_stage, ["--init", str(vico_out), "--out", str(router_out), "--steps", "4", *loop]) == 0
    report = json.loads((router_out / "router_report.json").read_text())
    assert report["train_tiles"] == len(ds) - 3 and report["tiles"] == 3
    assert 0.0 <= report["compressed_share"] <= 1.0
    routed = load_vision(router_out / "vision")
    assert not all(torch.equal(a, b) for a, b in zip(routed.vision_router.parameters(), enc.vision_router.parameters(),
                                                     strict=True))
    assert all(torch.equal(a, b) for a, b in zip(routed.mlp2.parameters(), enc.mlp2.parameters(), strict=True))


def test_router_learns_synthetic_labels():
    from ivl_embodied.vision.vir import VisualResolutionRouter

    torch.manual_seed(0)
    n, p, c = 256, 16, 32
    labels = torch.randint(0, 2, (n,))  # [N] balanced-ish
    patches = torch.randn(n, p, c)  # [N, P, C]
    patches[:, :, 0] += 1.5 * (2 * labels.float() - 1).unsqueeze(-1)  # the label is written in channel 0
    model = RouterModel(VisualResolutionRouter(c, heads=16), class_balanced=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(60):
        idx = torch.randint(0, 192, (32,))
        loss, _ = model({"patches": patches[idx], "labels": labels[idx]})
        loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        pred = model.router(patches[192:]).argmax(-1)  # held-out synthetic tiles
    acc = float((pred == labels[192:]).float().mean())
    assert acc > 0.9, acc


def test_router_labels_from_real_losses_match_hand_computation(tiny_data, tiny_planner):
    data_dir, _ = tiny_data
    ds = PlanDataset(data_dir)
    encoder, planner, _ = load_vir_planner(tiny_planner, seed=0)
    torch.manual_seed(1)
    pv = torch.randn(4, 3, 56, 56)  # 2 images x 2 tiles: exercises "compress one tile at a time"
    ins, plans = [ds.examples[i].instruction for i in (0, 1)], [ds.examples[i].plan for i in (0, 1)]
    l64, l256, patches = tile_losses(encoder, planner, pv, ins, plans, tiles_per_image=2)
    assert patches.shape == (4, 16, 32)
    hand64, hand256 = [], []
    with torch.no_grad():
        grid = encoder.vit_features(pv)
        full, comp = encoder.project_full(grid), encoder.project_compressed(grid)
        for b in range(2):
            base = -planner.score([torch.cat([full[2 * b], full[2 * b + 1]])], [ins[b]], [plans[b]])[0].mean()
            for t in range(2):
                blocks = [comp[2 * b + k] if k == t else full[2 * b + k] for k in range(2)]
                hand64.append(float(-planner.score([torch.cat(blocks)], [ins[b]], [plans[b]])[0].mean()))
                hand256.append(float(base))
    torch.testing.assert_close(l64, torch.tensor(hand64), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(l256, torch.tensor(hand256), rtol=1e-5, atol=1e-5)
    ratios = sorted(a / b for a, b in zip(hand64, hand256, strict=True))
    tau = (ratios[1] + ratios[2]) / 2  # between the 2nd and 3rd ratio: two tiles per class
    expect = [int(a / b < tau) for a, b in zip(hand64, hand256, strict=True)]
    assert router_labels(l64, l256, tau).labels.tolist() == expect
    assert sorted(expect) == [0, 0, 1, 1]


def test_vico_resume_matches_an_uninterrupted_run(tiny_data, tiny_planner, tmp_path):
    """The per-tile 256/64 draws come from the torch RNG the trainer checkpoints."""
    from safetensors.torch import load_file

    from ivl_embodied.train.config import OptimConfig, TrainConfig
    from ivl_embodied.train.vico import train_vico

    data_dir, _ = tiny_data
    cfg = TrainConfig(steps=4, batch_size=2, eval_interval=1000, checkpoint_interval=1000, log_interval=1,
                      holdout=0, eval_examples=0, device="cpu")
    optim = OptimConfig(lr=1e-2, warmup_steps=1)
    train_vico(tiny_planner, data_dir, tmp_path / "a", cfg, optim, nll_weight=0.5, progress=False)
    train_vico(tiny_planner, data_dir, tmp_path / "b", cfg, optim, nll_weight=0.5, stop_after=2, progress=False)
    train_vico(tiny_planner, data_dir, tmp_path / "b", cfg, optim, nll_weight=0.5, resume=True, progress=False)
    a, b = (load_file(str(tmp_path / r / "vision" / "model.safetensors")) for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("mlp2."))
    rows = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert all("train/nll64" in r for r in rows if "train/loss" in r)
