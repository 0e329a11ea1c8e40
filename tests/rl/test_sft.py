"""SFT of the whole model: overfits a handful of examples; 2-process gloo DDP averages gradients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivl_embodied.rl.config import ModelConfig, OptimConfig, TrainConfig
from ivl_embodied.rl.data import PlanDataset
from ivl_embodied.rl.sft import plan_metrics, plan_token_loss, train_sft

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


def test_plan_metrics():
    ref = '[{"action":"pick","object":"red cube","box":[100,100,200,200]}]'
    assert plan_metrics(ref, ref) == {"parsed": 1.0, "exact": 1.0, "ious": [1.0], "structure": 1.0}
    half = '[{"action":"pick","object":"red cube","box":[100,100,200,150]}]'
    assert plan_metrics(half, ref)["ious"] == [pytest.approx(0.5)]
    assert plan_metrics("not a plan", ref)["parsed"] == 0.0


def test_sft_overfits_a_handful_of_examples(tiny_data, tiny_model, tmp_path):
    from ivl_embodied.model.agent import make_planner
    from ivl_embodied.model.checkpoints import load_language, load_vision
    from ivl_embodied.model.planner import GenerationSettings

    data_dir, _ = tiny_data
    out = tmp_path / "sft"
    train = TrainConfig(steps=120, batch_size=3, eval_interval=1000, checkpoint_interval=1000, log_interval=10,
                        holdout=9, eval_examples=1, device="cpu")  # trains on examples 0..2 only
    train_sft(data_dir, out, ModelConfig(**tiny_model), train, OptimConfig(lr=3e-3, warmup_steps=10), progress=False)
    rows = json.loads((out / "metrics.json").read_text())
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
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
