"""The shared loop: lr schedule, batch sampling, and resume == uninterrupted (bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ivl_embodied.train.config import OptimConfig, TrainConfig
from ivl_embodied.train.trainer import Trainer, batch_indices, lr_at


def test_lr_schedule_hand_computed():
    cfg = OptimConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=4)
    assert [lr_at(s, 14, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, 14, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(9, 14, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way: cos(pi/2) = 0
    assert lr_at(14, 14, cfg) == pytest.approx(0.1)
    assert lr_at(100, 14, cfg) == pytest.approx(0.1)  # past the end stays at the floor


def test_batches_are_a_pure_function_of_step_and_rank_slices_equal_micro_steps():
    a = batch_indices(100, 7, seed=3, batch=4, accum=1, world=2, rank=1, micro=0)
    b = batch_indices(100, 7, seed=3, batch=4, accum=2, world=1, rank=0, micro=1)
    assert np.array_equal(a, b) and len(set(a)) == 4
    assert np.array_equal(a, batch_indices(100, 7, 3, 4, 1, 2, 1, 0))
    assert not np.array_equal(a, batch_indices(100, 8, 3, 4, 1, 2, 1, 0))
    ranks = np.concatenate([batch_indices(100, 7, 3, 4, 1, 2, r, 0) for r in range(2)])
    assert len(set(ranks.tolist())) == 8  # ranks never share an example within a step


class Toy(nn.Module):
    """A small regression net with dropout, so the RNG state matters for resuming."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, batch):
        loss = ((self.net(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        return loss, {"abs": float(loss.detach().sqrt())}


X = torch.linspace(-1, 1, 64 * 4).reshape(64, 4)
Y = torch.sin(3 * X).sum(-1)


def _trainer(out, batch_fn=None):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=9, batch_size=8, eval_interval=3, checkpoint_interval=2, log_interval=1, holdout=0,
                      eval_examples=0, device="cpu")
    fn = batch_fn or (lambda idx: {"x": X[idx], "y": Y[idx]})
    return Trainer(Toy(), 64, fn, out, cfg, OptimConfig(lr=0.05, warmup_steps=2),
                   eval_fn=lambda m: {"mse": float(((m.net(X).squeeze(-1) - Y) ** 2).mean())},
                   progress=False, stage="toy")


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    full = _trainer(tmp_path / "full")
    full.fit()
    calls = {"n": 0}

    def dying(idx):
        calls["n"] += 1
        if calls["n"] == 6:  # step 5: the last checkpoint was written at the start of step 4
            raise KeyboardInterrupt("killed")
        return {"x": X[idx], "y": Y[idx]}

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "cut", dying).fit()
    assert (tmp_path / "cut" / "latest").read_text() == "ckpt-0000004"
    resumed = _trainer(tmp_path / "cut")
    resumed.fit(resume=True)
    assert resumed.step == full.step == 9
    for (name, a), b in zip(full.raw.state_dict().items(), resumed.raw.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the metrics are the same rows too (no duplicates from the redone steps)
    assert [r["step"] for r in full.rows] == [r["step"] for r in resumed.rows]
    losses = lambda t: [r.get("train/loss") for r in t.rows]  # noqa: E731
    assert losses(full) == losses(resumed)
    assert (tmp_path / "cut" / "metrics.csv").is_file() and (tmp_path / "cut" / "plots" / "train_loss.png").is_file()


def test_stop_after_then_resume_matches(tmp_path):
    full = _trainer(tmp_path / "full")
    full.fit()
    half = _trainer(tmp_path / "half")
    half.fit(stop_after=5)
    assert half.step == 5 and (tmp_path / "half" / "latest").read_text() == "ckpt-0000005"
    rest = _trainer(tmp_path / "half")
    rest.fit(resume=True)
    for a, b in zip(full.raw.parameters(), rest.raw.parameters(), strict=True):
        assert torch.equal(a, b)
    assert math.isfinite(rest.rows[-1]["eval/mse"])


def test_training_reduces_the_loss(tmp_path):
    t = _trainer(tmp_path / "t")
    t.fit()
    evals = [r["eval/mse"] for r in t.rows if "eval/mse" in r]
    assert evals[-1] < 0.7 * evals[0]
