"""SFT of the whole model: overfits a handful of examples; 2-process gloo DDP averages gradients."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivl_embodied.train.config import ModelConfig, OptimConfig, TrainConfig
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.sft import plan_metrics, plan_token_loss, train_sft

REPO = Path(__file__).resolve().parents[2]


def test_plan_token_loss_hand_computed():
    # uniform logits over V=4 -> CE = ln 4 on every labelled position; -100 positions ignored
    logits = torch.zeros(1, 4, 4)
    labels = torch.tensor([[-100, 2, -100, 1]])
    loss, acc = plan_token_loss(logits, labels)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    logits[0, 0, 2] = 10.0  # position 0 predicts token 1's label (2) confidently
    loss, acc = plan_token_loss(logits, labels)
    assert acc.item() == pytest.approx(0.5)


def test_weighted_plan_token_loss_hand_computed():
    # V=2; position 0 predicts labels[1] = 0 with p = 0.5 (CE ln 2), position 2 predicts
    # labels[3] = 1 with p = sigmoid(-ln 3) = 1/4 (CE ln 4); weights 1 and 3 -> (ln 2 + 3 ln 4) / 4
    logits = torch.zeros(1, 4, 2)
    logits[0, 2, 0] = torch.log(torch.tensor(3.0))
    labels = torch.tensor([[-100, 0, -100, 1]])
    plain, _ = plan_token_loss(logits, labels)
    assert plain.item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    weights = torch.tensor([[9.0, 1.0, 9.0, 3.0]])  # weights off the labels never count
    loss, acc = plan_token_loss(logits, labels, weights)
    assert loss.item() == pytest.approx((math.log(2) + 3 * math.log(4)) / 4)
    assert plan_token_loss(logits, labels, torch.ones(1, 4))[0].item() == pytest.approx(plain.item())


def test_plan_metrics():
    ref = '[{"action":"pick","object":"red cube","box":[100,100,200,200]}]'
    assert plan_metrics(ref, ref) == {"parsed": 1.0, "exact": 1.0, "ious": [1.0], "centred": [True],
                                      "structure": 1.0}
    half = '[{"action":"pick","object":"red cube","box":[100,100,200,150]}]'
    assert plan_metrics(half, ref)["ious"] == [pytest.approx(0.5)]
    assert plan_metrics(half, ref)["centred"] == [True]  # centre (150, 125) lies inside the reference
    beside = '[{"action":"pick","object":"red cube","box":[180,100,280,200]}]'  # centre x 230 > 200
    assert plan_metrics(beside, ref)["centred"] == [False] and plan_metrics(beside, ref)["ious"][0] > 0
    assert plan_metrics("not a plan", ref)["parsed"] == 0.0
    assert plan_metrics("not a plan", ref)["centred"] == [False]
    # with the scene's objects: a miss that lands on another object is told from an imprecise one
    objects = [{"name": "red cube", "box": [100, 100, 200, 200]}, {"name": "blue cube", "box": [300, 300, 360, 360]}]
    on_blue = '[{"action":"pick","object":"red cube","box":[310,310,350,350]}]'
    assert plan_metrics(on_blue, ref, objects)["other_object"] == [True]
    assert plan_metrics(beside, ref, objects)["other_object"] == [False]  # near the red cube, on nothing else
    assert plan_metrics(ref, ref, objects)["other_object"] == [False]
    assert plan_metrics("not a plan", ref, objects)["other_object"] == [False]
    assert "other_object" not in plan_metrics(on_blue, ref)


def test_sft_overfits_a_handful_of_examples(tiny_data, tiny_model, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_language, load_vision
    from ivl_embodied.checkpoints.planner import make_planner
    from ivl_embodied.language.planner import GenerationSettings

    data_dir, _ = tiny_data
    out = tmp_path / "sft"
    train = TrainConfig(steps=120, batch_size=3, eval_interval=1000, checkpoint_interval=1000, log_interval=10,
                        holdout=9, eval_examples=1, device="cpu")  # trains on examples 0..2 only
    # the plain SFT loop (the augmentations and the auxiliary terms are tested on their own)
    train_sft(data_dir, out, ModelConfig(**tiny_model), train, OptimConfig(lr=3e-3, warmup_steps=10), progress=False,
              paraphrase_prob=0.0, aux_weight=0.0, attn_weight=0.0, mirror_prob=0.0, retarget_prob=0.0)
    rows = json.loads((out / "metrics.json").read_text())
    losses = [r["train/plan_loss"] for r in rows if "train/plan_loss" in r]  # the plans, without the aux terms
    assert losses[-1] < losses[0] / 20, losses
    # the saved planner (default layout) reproduces a training plan with greedy decoding
    ds = PlanDataset(data_dir)
    enc, planner = load_vision(out / "vision"), load_language(out / "language")
    emb, _ = enc(ds.pixel_values([1]))
    text = planner.generate(emb, ds.examples[1].instruction, GenerationSettings(max_new_tokens=200)).text
    assert text == ds.examples[1].plan
    assert make_planner(str(out)).max_tiles == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sft_cmd(data_dir, out, extra):
    return ["-m", "ivl_embodied.cli", "train", "sft", "--data", str(data_dir), "--out", str(out), "--steps", "3",
            "--batch-size", "2", "--holdout", "0", "--eval-examples", "0", "--log-interval", "1",
            "--warmup-steps", "1", "--device", "cpu", "--no-progress", "--vision-hidden", "32", "--vision-layers",
            "1", "--text-hidden", "64", "--text-layers", "1", "--vocab-size", "400", *extra]


def test_two_process_gloo_equals_gradient_accumulation(tiny_data, tmp_path):
    """2 ranks x batch 2 (DDP over gloo) == 1 process x 2 micro-steps of 2: gradients are averaged."""
    data_dir, _ = tiny_data
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), *_sft_cmd(data_dir, tmp_path / "ddp", [])],
        env=env, capture_output=True, text=True, timeout=180)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, *_sft_cmd(data_dir, tmp_path / "one", ["--grad-accum", "2"])],
                            env=env, capture_output=True, text=True, timeout=180)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "data-parallel over 2 processes" in ddp.stderr
    for part in ("vision", "language"):
        a = load_file(str(tmp_path / "ddp" / part / "model.safetensors"))
        b = load_file(str(tmp_path / "one" / part / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_two_process_fsdp_equals_gradient_accumulation_and_resumes(tiny_data, tmp_path):
    """FSDP2 over 2 gloo ranks (sharded parameters, gradients and AdamW state) == 1 process x 2
    micro-steps; a run stopped after step 2 and resumed from its gathered checkpoint ends the same."""
    data_dir, _ = tiny_data
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}

    def torchrun(out, *extra):
        return subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
             "--master_port", str(_free_port()), *_sft_cmd(data_dir, out, ["--fsdp", *extra])],
            env=env, capture_output=True, text=True, timeout=240)

    full = torchrun(tmp_path / "fsdp")
    assert full.returncode == 0, full.stderr[-3000:]
    assert "FSDP2 over 2 processes" in full.stderr
    single = subprocess.run([sys.executable, *_sft_cmd(data_dir, tmp_path / "one", ["--grad-accum", "2"])],
                            env=env, capture_output=True, text=True, timeout=180)
    assert single.returncode == 0, single.stderr[-3000:]
    first = torchrun(tmp_path / "resumed", "--stop-after", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "resumed" / "vision").exists()
    second = torchrun(tmp_path / "resumed", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr
    for part in ("vision", "language"):
        a = load_file(str(tmp_path / "fsdp" / part / "model.safetensors"))
        b = load_file(str(tmp_path / "one" / part / "model.safetensors"))
        c = load_file(str(tmp_path / "resumed" / part / "model.safetensors"))
        assert a.keys() == b.keys() == c.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
            torch.testing.assert_close(c[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def _tiny_sft_model(data_dir, tiny_model, **weights):
    from ivl_embodied.train.sft import SFTModel, build_planner_modules
    from ivl_embodied.train.tokenizer import train_planner_tokenizer

    ds = PlanDataset(data_dir)
    tok = train_planner_tokenizer(ds.corpus(), 400)
    torch.manual_seed(0)
    return ds, SFTModel(*build_planner_modules(ModelConfig(**tiny_model), tok), **weights)


def test_box_attention_targets_point_digit_predictions_at_the_box_centre_token(tiny_data, tiny_model):
    from ivl_embodied.train.sft import box_attention_targets

    ds, model = _tiny_sft_model(tiny_data[0], tiny_model)
    tok, planner = model.planner.tokenizer, model.planner
    plan = '[{"action":"pick","object":"red cube","box":[10,620,240,990]}]'  # centre (125, 805)
    vis = torch.zeros(4, planner.lm.config.hidden_size)  # a 2x2 token grid
    prompt = planner.prompt_ids(vis, "pick up the red cube")
    q, k = box_attention_targets(tok, prompt, planner.image_token_id, plan)
    seq = prompt + tok(plan, add_special_tokens=False)["input_ids"]
    assert "".join(tok.decode([seq[i + 1]]) for i in q) == "10620240990"  # every digit, in order
    image = [i for i, t in enumerate(prompt) if t == planner.image_token_id]
    assert set(k) == {image[2]}  # row 1, column 0 of the 2x2 grid
    with pytest.raises(ValueError, match="3 tokens"):
        box_attention_targets(tok, [t for i, t in enumerate(prompt) if i != image[0]], planner.image_token_id, plan)
    # first_only: the one query per box that picks the object (its first digit), same key
    two = plan[:-1] + ',{"action":"place","object":"red cube","target":"bowl","target_box":[600,10,990,300]}]'
    q2, k2 = box_attention_targets(tok, prompt, planner.image_token_id, two, first_only=True)
    full = prompt + tok(two, add_special_tokens=False)["input_ids"]
    assert [tok.decode([full[i + 1]]) for i in q2] == ["1", "6"]
    assert q2[0] == q[0] and k2 == [image[2], image[1]]  # centre (795, 155): row 0, column 1


def test_box_token_weights_mark_exactly_the_box_digits(tiny_data, tiny_model):
    from ivl_embodied.train.sft import box_token_weights

    ds, model = _tiny_sft_model(tiny_data[0], tiny_model)
    planner, tok = model.planner, model.planner.tokenizer
    plans = ['[{"action":"pick","object":"red cube","box":[7,620,240,990]}]',
             '[{"action":"push","object":"cube 2","box":[1,2,3,4],"target":"zone 9","target_box":[5,6,7,8]}]']
    vis = [torch.zeros(4, planner.lm.config.hidden_size)] * 2
    _, labels = planner.forward_batch(vis, ["pick it", "push it"], plans)
    w = box_token_weights(tok, labels, plans, 4.0)
    for b, plan in enumerate(plans):
        heavy = labels[b][w[b] == 4.0].tolist()
        digits = "".join(c for m in re.finditer(r"\[([\d,]+)\]", plan) for c in m.group(1) if c != ",")
        assert tok.decode(heavy) == digits  # the digits of "cube 2" and "zone 9" are not box digits
    assert set(w.unique().tolist()) == {1.0, 4.0}
    with pytest.raises(ValueError, match="box_weight"):
        _tiny_sft_model(tiny_data[0], tiny_model, box_weight=0.0)
    with pytest.raises(ValueError, match="decision_weight"):
        _tiny_sft_model(tiny_data[0], tiny_model, decision_weight=1.0)


def test_auxiliary_losses_train_their_targets_and_stay_out_of_the_saved_planner(tiny_data, tiny_model, tmp_path):
    from ivl_embodied.train.sft import make_batch_fn, save_planner

    ds, model = _tiny_sft_model(tiny_data[0], tiny_model, aux_weight=1.0, attn_weight=1.0)
    batch = make_batch_fn(ds, seed=0, paraphrase_prob=0.0, grounding=True, grid=4)([0, 1, 2, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, m = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or m
    assert m["box_attention"] < first["box_attention"] / 3, (first, m)  # the head learns where to look
    assert m["aux_color"] < first["aux_color"] / 3 and m["aux_box_l1"] < first["aux_box_l1"]
    save_planner(model, tmp_path / "p")
    saved = [k for f in (tmp_path / "p").rglob("*.safetensors") for k in load_file(str(f))]
    assert saved and not any("grounding" in k for k in saved)


def test_sft_init_fine_tunes_an_existing_planner_with_its_tokenizer(tiny_data, tiny_model, tmp_path):
    from ivl_embodied.train.sft import save_planner

    data_dir, _ = tiny_data
    _, start = _tiny_sft_model(data_dir, tiny_model)
    save_planner(start, tmp_path / "start")
    train = TrainConfig(steps=2, batch_size=2, eval_interval=1000, checkpoint_interval=1000, log_interval=1,
                        holdout=4, eval_examples=0, device="cpu")
    train_sft(data_dir, tmp_path / "ft", train_cfg=train, optim_cfg=OptimConfig(lr=1e-9, warmup_steps=0),
              progress=False, init=tmp_path / "start", aux_weight=0.0, attn_weight=0.0)
    assert not (tmp_path / "ft" / "tokenizer").exists()  # the planner's own tokenizer, not a new one
    # a negligible learning rate: the fine-tuned weights are the starting ones (not a fresh model)
    for side in ("vision", "language"):
        a = load_file(str(tmp_path / "start" / side / "model.safetensors"))
        b = load_file(str(tmp_path / "ft" / side / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init"] == str(tmp_path / "start") and config["model"] is None


def test_decision_weight_adds_the_first_digit_attention_term(tiny_data, tiny_model):
    from ivl_embodied.train.sft import box_attention_targets, make_batch_fn

    ds, model = _tiny_sft_model(tiny_data[0], tiny_model, attn_weight=1.0)
    batch = make_batch_fn(ds, seed=0, paraphrase_prob=0.0, grounding=False, grid=4)([0, 1])
    with torch.no_grad():
        base = model(batch)[1]["box_attention"]
        model.decision_weight = 2.0
        more = model(batch)[1]["box_attention"]
        vis = model.visuals(batch["pixel_values"])
        nll = []
        for b, (v, ins, plan) in enumerate(zip(vis, batch["instructions"], batch["plans"], strict=True)):
            q, k = box_attention_targets(model.planner.tokenizer, model.planner.prompt_ids(v, ins),
                                         model.planner.image_token_id, plan, first_only=True)
            assert len(q) == plan.count("box")  # one decision per box
            nll += [-math.log(float(model.box_attention.weights[b, 0, qi, ki])) for qi, ki in zip(q, k, strict=True)]
    assert more - base == pytest.approx(2.0 * sum(nll) / len(nll), rel=1e-4)
