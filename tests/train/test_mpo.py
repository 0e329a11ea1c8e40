"""MPO: sim-scored preference pairs, the margin moves the right way, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ivl_embodied.train.config import ModelConfig, OptimConfig, TrainConfig
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.mpo import (
    NEGATIVES,
    MPOModel,
    PairConfig,
    build_pairs,
    load_policy,
    logp_margin,
    pair_batch_fn,
    pair_for_example,
    planner_hash,
    sample_plans,
    train_mpo,
)

TINY_MODEL = dict(tile_size=56, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64, text_layers=2,
                  text_heads=4, text_kv_heads=2, vocab_size=400)  # conftest's tiny planner


@pytest.fixture(scope="module")
def setup(tiny_data, tmp_path_factory):
    """(data dir, init dir, pair records) for 2 prompts: built once, ~10 s of simulation."""
    from ivl_embodied.train.sft import SFTModel, build_planner_modules, save_planner
    from ivl_embodied.train.tokenizer import train_planner_tokenizer

    data_dir, _ = tiny_data
    data = PlanDataset(data_dir)
    root = tmp_path_factory.mktemp("mpo")
    torch.manual_seed(0)
    tok = train_planner_tokenizer(data.corpus(), TINY_MODEL["vocab_size"])
    model = SFTModel(*build_planner_modules(ModelConfig(**TINY_MODEL), tok), tiles_per_image=data.tiles_per_image)
    save_planner(model, root / "init")
    policy = load_policy(root / "init")
    cfg = PairConfig(samples=2, temperature=1.0, max_new_tokens=160, prompts=2, seed=0)  # = train_mpo's prompts
    records = build_pairs(policy, data, [0, 1], cfg, root / "pairs.jsonl", planner_hash(root / "init"), progress=False)
    return data_dir, root, records, cfg


def test_pairs_are_scored_in_the_sim(setup):
    data_dir, root, records, cfg = setup
    data = PlanDataset(data_dir)
    assert [r["index"] for r in records] == [0, 1]
    for r in records:
        assert "skipped" not in r, r
        by_text = {c["text"]: c for c in r["candidates"]}
        # chosen succeeded and rejected failed in the simulator (recorded scores)
        assert by_text[r["chosen"]]["success"] is True
        assert by_text[r["rejected"]]["success"] is False
        assert by_text[r["rejected"]]["reason"]
        samples = [c for c in r["candidates"] if c["source"].startswith("sample")]
        assert len(samples) == 2
        if not any(c["success"] for c in samples):
            assert r["chosen_source"] == "oracle" and r["chosen"] == data.examples[r["index"]].plan
        # only what decides the pick is run: a failing sample makes the synthetic negatives unnecessary
        if not all(c["success"] for c in samples):
            assert not any(c["source"] in NEGATIVES for c in r["candidates"])
        assert r["episodes"] == len({c["text"] for c in r["candidates"] if c["success"] is not None})
    # a random planner never succeeds, so the oracle is chosen at least once
    assert any(r["chosen_source"] == "oracle" for r in records)
    meta = json.loads((root / "pairs.meta.json").read_text())
    assert meta["pairs"] == 2 and meta["pairs_per_s"] > 0
    # cached: a second call with the same inputs reads the file back (no simulation)
    policy = load_policy(root / "init")
    again = build_pairs(policy, data, [0, 1], cfg, root / "pairs.jsonl", planner_hash(root / "init"), progress=False)
    assert again == records
    # samples are a pure function of the seeds
    assert sample_plans(policy, data, 0, cfg) == [c["text"] for c in records[0]["candidates"][:2]]


def test_pairs_built_by_two_workers_equal_one_process(setup):
    """Two worker processes, each loading the planner from its directory, write the same records in
    prompt order (wall-clock figures aside)."""
    data_dir, root, records, cfg = setup
    data = PlanDataset(data_dir)
    policy = load_policy(root / "init")
    path = root / "pairs_two_workers.jsonl"
    two = build_pairs(policy, data, [0, 1], cfg, path, planner_hash(root / "init"), progress=False,
                      workers=2, init=root / "init")
    assert two == records
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
    with pytest.raises(ValueError, match="needs init"):
        build_pairs(policy, data, [0, 1], cfg, root / "p3.jsonl", "", progress=False, workers=2)
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        build_pairs(policy, data, [0, 1], cfg, root / "p4.jsonl", "", progress=False, workers=0)


def test_synthetic_negatives_are_run_only_until_one_fails(setup):
    data_dir, root, _, _ = setup
    rec = pair_for_example(load_policy(root / "init"), PlanDataset(data_dir), 0, PairConfig(samples=0))
    assert rec["chosen_source"] == "oracle" and rec["rejected_source"] in NEGATIVES
    synth = [c for c in rec["candidates"] if c["source"] in NEGATIVES]
    first_fail = next(i for i, c in enumerate(synth) if c["success"] is False)
    assert all(c["success"] is True for c in synth[:first_fail])
    assert all(c["success"] is None for c in synth[first_fail + 1:])
    assert rec["episodes"] == first_fail + 2  # the oracle + the negatives up to the first failure


def test_synthetic_negatives_change_only_what_their_kind_names(setup):
    """other_box keeps every phrase and moves the object's box onto the box wrong_object uses for
    another object; wrong_target changes only the target; shifted_box moves only the first box."""
    from ivl_embodied.plan.schema import parse_plan
    from ivl_embodied.train.mpo import _task, synthetic_negatives

    data_dir, _, _, _ = setup
    ex = PlanDataset(data_dir).examples[0]
    oracle = parse_plan(ex.plan)
    neg = {k: parse_plan(t) for k, t in synthetic_negatives(_task(ex), ex.plan).items()}
    assert list(neg) == list(NEGATIVES)  # the tiny scene offers every kind, in priority order
    first = oracle.steps[0]
    other, wrong = neg["other_box"].steps, neg["wrong_object"].steps
    assert [s.object for s in other] == [s.object for s in oracle.steps]  # the right object is named
    assert wrong[0].object != first.object
    assert other[0].box == wrong[0].box != first.box  # ... with another object's box
    assert [(s.target, s.target_box) for s in other] == [(s.target, s.target_box) for s in oracle.steps]
    target = [s for s in neg["wrong_target"].steps if s.target]
    assert target and all(s.target != o.target for s, o in zip(neg["wrong_target"].steps, oracle.steps,
                                                               strict=True) if s.target)
    assert [s.box for s in neg["wrong_target"].steps] == [s.box for s in oracle.steps]
    shifted = neg["shifted_box"].steps
    assert shifted[0].box != first.box and shifted[1:] == oracle.steps[1:]
    assert (shifted[0].box[2] - shifted[0].box[0]) == (first.box[2] - first.box[0])  # same size, moved
    only = synthetic_negatives(_task(ex), ex.plan, ("wrong_target",))
    assert list(only) == ["wrong_target"]


def _train_cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=2, eval_interval=1000, checkpoint_interval=kw.pop("ckpt", 1000),
                       log_interval=1, holdout=0, eval_examples=0, device="cpu", **kw)


def _few_steps(data, root, records, swap: bool) -> torch.Tensor:
    from ivl_embodied.train.trainer import Trainer

    pairs = [dict(r, chosen=r["rejected"], rejected=r["chosen"]) if swap else r for r in records]
    torch.manual_seed(0)
    model = MPOModel(load_policy(root / "init"))
    trainer = Trainer(model, len(pairs), pair_batch_fn(data, pairs), root / ("swap" if swap else "mpo"),
                      _train_cfg(6), OptimConfig(lr=1e-3, warmup_steps=1), progress=False, stage="mpo")
    trainer.fit()
    return logp_margin(model.policy, data, records)


def test_mpo_steps_widen_the_chosen_rejected_margin(setup):
    data_dir, root, records, _ = setup
    data = PlanDataset(data_dir)
    before = logp_margin(load_policy(root / "init"), data, records)
    after = _few_steps(data, root, records, swap=False)
    assert (after > before + 1.0).all(), (before, after)
    # the same steps on swapped pairs move the margin the other way: the sign matters
    swapped = _few_steps(data, root, records, swap=True)
    assert (swapped < before - 1.0).all(), (before, swapped)


def test_resume_after_interruption_gives_identical_weights(setup):
    from ivl_embodied.checkpoints.planner import make_planner

    data_dir, root, _, cfg = setup
    kw = dict(pair_cfg=cfg, optim_cfg=OptimConfig(lr=1e-3, warmup_steps=1), progress=False,
              pairs_path=root / "pairs.jsonl")
    full, cut = root / "full", root / "cut"
    train_mpo(data_dir, root / "init", full, train_cfg=_train_cfg(4, ckpt=2), **kw)
    train_mpo(data_dir, root / "init", cut, train_cfg=_train_cfg(4, ckpt=2), stop_after=2, **kw)
    assert (cut / "latest").read_text() == "ckpt-0000002" and not (cut / "language").exists()
    train_mpo(data_dir, root / "init", cut, train_cfg=_train_cfg(4, ckpt=2), resume=True, **kw)
    for part in ("vision", "language"):
        a, b = load_file(str(full / part / "model.safetensors")), load_file(str(cut / part / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    rows = json.loads((full / "metrics.json").read_text())
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    assert all(k in train_rows[-1] for k in ("train/preference", "train/quality", "train/generation"))
    assert "eval/pairs_reward_acc" in rows[-1]
    assert make_planner(str(full)).max_tiles == 1  # sim-eval's loader takes the output
