"""Shared training loop for every Cascade RL stage (SFT, MPO, GSPO, ViCO, router).

The loop reads in nanoGPT's order: lr schedule -> eval/checkpoint -> micro-steps -> clip ->
step -> log. A stage supplies a module whose ``forward(batch)`` returns ``(loss, metrics)``,
a ``batch_fn(indices)`` and optionally an ``eval_fn(module)``; the trainer owns everything else:

* data-parallel through ``accelerate`` (DDP; gloo on CPU, NCCL on CUDA, bf16 autocast on CUDA);
  launch with ``torchrun --nproc_per_node N`` / ``accelerate launch`` and nothing else changes;
* batches are a pure function of (seed, step): each step draws ``batch x accum x world``
  indices from ``default_rng([seed, step])`` and rank r's micro-step m takes slice
  ``r * accum + m``, so a resumed run sees exactly the data an uninterrupted one sees, and N
  ranks x 1 micro-step equal 1 rank x N micro-steps;
* checkpoints ``ckpt-<step>/`` hold ``model.safetensors`` + ``optimizer.pt`` + ``rng.pt`` +
  ``state.json``; they are written to a ``.tmp`` directory and renamed, then ``latest`` is
  replaced atomically, so a kill at any moment leaves the previous checkpoint usable;
* metrics go to ``metrics.csv`` / ``metrics.json`` (one row per logged step or eval) and
  ``plots/*.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import OptimConfig, TrainConfig, to_dict

logger = logging.getLogger(__name__)

BatchFn = Callable[[np.ndarray], object]
EvalFn = Callable[[nn.Module], dict]


def lr_at(step: int, total: int, cfg: OptimConfig) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine from ``lr`` to ``min_lr_ratio * lr`` at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * coeff)


def batch_indices(n: int, step: int, seed: int, batch: int, accum: int, world: int, rank: int, micro: int) -> np.ndarray:
    """Example indices for (step, rank, micro-step): a pure function, see the module docstring."""
    if n <= 0:
        raise ValueError(f"no training examples (n={n})")
    rng = np.random.default_rng([seed, step])
    total = batch * accum * world
    idx = rng.permutation(n)[:total] if total <= n else rng.integers(0, n, total)  # [total]
    part = rank * accum + micro
    return idx[part * batch : (part + 1) * batch]


def make_accelerator(cfg: TrainConfig):
    """An ``Accelerator`` for ``cfg.device``/``cfg.dtype`` (gloo on CPU under torchrun)."""
    from accelerate import Accelerator

    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but CUDA is not available")
    mixed = "bf16" if (cfg.dtype == "bf16" and not cpu) else "no"
    if cfg.dtype == "bf16" and cpu:
        logger.warning("bf16 autocast is only used on CUDA; training in fp32 on the CPU")
    return Accelerator(cpu=cpu, mixed_precision=mixed)


class Trainer:
    """Runs ``cfg.steps`` optimizer steps of ``module`` with resumable checkpoints in ``out``."""

    def __init__(self, module: nn.Module, n_examples: int, batch_fn: BatchFn, out: str | Path,
                 train: TrainConfig, optim: OptimConfig, eval_fn: EvalFn | None = None,
                 save_fn: Callable[[nn.Module, Path], None] | None = None, accelerator=None,
                 progress: bool = True, stage: str = "train"):
        self.cfg, self.optim_cfg = train, optim
        self.out = Path(out)
        self.n, self.batch_fn, self.eval_fn, self.save_fn = n_examples, batch_fn, eval_fn, save_fn
        self.stage, self.progress = stage, progress
        self.acc = accelerator or make_accelerator(train)
        decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=optim.lr, betas=(optim.beta1, optim.beta2))
        self.raw = module
        logger.info("%s: data-parallel over %d processes (%s, device %s, mixed precision %s)", stage,
                    self.acc.num_processes, self.acc.distributed_type, self.acc.device, self.acc.mixed_precision)
        self.model, self.optimizer = self.acc.prepare(module, optimizer)
        self.step = 0
        self.rows: list[dict] = []

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    def latest_checkpoint(self) -> Path | None:
        latest = self.out / "latest"
        if not latest.is_file():
            return None
        path = self.out / latest.read_text().strip()
        return path if (path / "state.json").is_file() else None

    def save_checkpoint(self) -> Path:
        """Atomic: write ``ckpt-<step>.tmp``, rename it, then replace ``latest``."""
        from safetensors.torch import save_model

        final = self.out / f"ckpt-{self.step:07d}"
        if self.is_main:
            tmp = final.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_model(self.acc.unwrap_model(self.model), str(tmp / "model.safetensors"))
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(self._rng_state(), tmp / "rng.pt")
            state = {"step": self.step, "stage": self.stage, "train": to_dict(self.cfg), "optim": to_dict(self.optim_cfg)}
            (tmp / "state.json").write_text(json.dumps(state, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            (self.out / "latest.tmp").write_text(final.name)
            os.replace(self.out / "latest.tmp", self.out / "latest")
            for old in sorted(self.out.glob("ckpt-???????"))[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            logger.info("saved checkpoint %s", final)
        self.acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_model

        load_model(self.acc.unwrap_model(self.model), str(path / "model.safetensors"), device=str(self.acc.device))
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=self.acc.device, weights_only=True))
        self._set_rng_state(torch.load(path / "rng.pt", weights_only=False))
        self.step = int(json.loads((path / "state.json").read_text())["step"])
        self.rows = [r for r in self._read_rows() if r["step"] <= self.step]  # rows after the checkpoint are redone
        logger.info("resumed from %s at step %d", path, self.step)

    @staticmethod
    def _rng_state() -> dict:
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _set_rng_state(state: dict) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    # -- metrics -----------------------------------------------------------------------------
    def _read_rows(self) -> list[dict]:
        p = self.out / "metrics.json"
        return json.loads(p.read_text()) if p.is_file() else []

    def _write_metrics(self) -> None:
        if not self.is_main:
            return
        keys = sorted({k for r in self.rows for k in r} - {"step"})
        tmp = self.out / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", *keys])
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.out / "metrics.csv")
        (self.out / "metrics.json.tmp").write_text(json.dumps(self.rows))
        os.replace(self.out / "metrics.json.tmp", self.out / "metrics.json")

    def plot(self) -> None:
        """One PNG per metric (matplotlib Agg) under ``out/plots``."""
        if not self.is_main or not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plots = self.out / "plots"
        plots.mkdir(exist_ok=True)
        for key in sorted({k for r in self.rows for k in r} - {"step"}):
            pts = [(r["step"], r[key]) for r in self.rows if isinstance(r.get(key), (int, float))]
            if not pts:
                continue
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 50 else None)
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            ax.set_title(f"{self.stage}: {key}")
            if key.endswith("loss") and all(v > 0 for _, v in pts):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(plots / f"{key.replace('/', '_')}.png", dpi=100)
            plt.close(fig)

    # -- the loop ----------------------------------------------------------------------------
    def _evaluate(self) -> None:
        row: dict = {"step": self.step}
        if self.eval_fn is not None:
            self.model.eval()
            with torch.no_grad(), self.acc.autocast():
                row.update({f"eval/{k}": v for k, v in self.eval_fn(self.acc.unwrap_model(self.model)).items()})
            self.model.train()
            logger.info("step %d eval %s", self.step, {k: round(v, 4) for k, v in row.items() if k != "step"})
            self.rows.append(row)

    def fit(self, resume: bool = False, stop_after: int | None = None) -> dict:
        """Train to ``cfg.steps`` (or ``stop_after`` steps in total, for staged runs); returns the last row."""
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.cfg.seed)
        ckpt = self.latest_checkpoint() if resume else None
        if ckpt is not None:
            self.load_checkpoint(ckpt)
        elif resume:
            logger.info("no checkpoint in %s; starting from scratch", self.out)
        end = min(self.cfg.steps, stop_after) if stop_after is not None else self.cfg.steps
        world, rank, accum = self.acc.num_processes, self.acc.process_index, self.cfg.grad_accum
        resumed_at = self.step if ckpt is not None else -1
        self.model.train()
        bar = tqdm(total=end, initial=self.step, desc=self.stage, unit="step", disable=not (self.progress and self.is_main))
        t_last, last = time.perf_counter(), {}
        while self.step < end:
            # 1. learning rate for this step
            lr = lr_at(self.step, self.cfg.steps, self.optim_cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # 2. eval + checkpoint (a resumed run already did them at this step)
            if self.step != resumed_at:
                if self.step % self.cfg.eval_interval == 0:
                    self._evaluate()
                if self.step % self.cfg.checkpoint_interval == 0 and self.step > 0:
                    self._write_metrics()
                    self.save_checkpoint()
                    self.plot()
            # 3. micro-steps; gradients are all-reduced (averaged over ranks) only on the last one
            metrics: dict[str, float] = {}
            for micro in range(accum):
                batch = self.batch_fn(batch_indices(self.n, self.step, self.cfg.seed, self.cfg.batch_size,
                                                    accum, world, rank, micro))
                sync = micro == accum - 1
                ctx = self.acc.no_sync(self.model) if (not sync and world > 1) else nullcontext()
                with ctx, self.acc.autocast():
                    loss, m = self.model(batch)
                    self.acc.backward(loss / accum)
                for k, v in {"loss": float(loss.detach()), **m}.items():
                    metrics[k] = metrics.get(k, 0.0) + float(v) / accum
            # 4. clip
            if self.optim_cfg.grad_clip > 0:
                norm = self.acc.clip_grad_norm_(self.model.parameters(), self.optim_cfg.grad_clip)
                metrics["grad_norm"] = float(norm)
            # 5. step
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            bar.update(1)
            # 6. log (rank 0's view; metrics are per-rank means)
            if self.step % self.cfg.log_interval == 0 or self.step == end:
                now = time.perf_counter()
                row = {"step": self.step, "lr": lr, **{f"train/{k}": v for k, v in metrics.items()},
                       "steps_per_s": self.cfg.log_interval / max(now - t_last, 1e-9)}
                t_last = now
                self.rows.append(row)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
                if not (self.progress and self.is_main):
                    logger.info("step %d loss %.4f lr %.2e %.2f steps/s", self.step, metrics["loss"], lr,
                                row["steps_per_s"])
                last = row
        bar.close()
        if self.step >= self.cfg.steps:  # finished: final eval, checkpoint and export
            self._evaluate()
            self._write_metrics()
            if self.latest_checkpoint() is None or self.latest_checkpoint().name != f"ckpt-{self.step:07d}":
                self.save_checkpoint()
            self.plot()
            if self.save_fn is not None and self.is_main:
                self.save_fn(self.acc.unwrap_model(self.model), self.out)
            self.acc.wait_for_everyone()
        else:  # stopped early on purpose: leave a checkpoint to resume from
            self._write_metrics()
            self.save_checkpoint()
        return last
