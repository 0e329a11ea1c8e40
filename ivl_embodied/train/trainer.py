"""Shared training loop for every Cascade RL stage (SFT, MPO, GSPO, ViCO, router).

The loop reads in nanoGPT's order: lr schedule -> eval/checkpoint -> micro-steps -> clip ->
step -> log. A stage supplies a module whose ``forward(batch)`` returns ``(loss, metrics)``,
a ``batch_fn(indices)`` and optionally an ``eval_fn(module)``; the trainer owns everything else:

* data-parallel through ``accelerate`` (DDP; gloo on CPU, NCCL on CUDA, bf16 autocast on CUDA);
  launch with ``torchrun --nproc_per_node N`` / ``accelerate launch`` and nothing else changes;
* ``TrainConfig.fsdp`` (``--fsdp``) shards instead of replicating, for checkpoints too large for
  one GPU (InternVL3.5-8B): torch's FSDP2 ``fully_shard`` on every transformer layer (the items
  of each ``layers``/``layer`` ModuleList, ViT and LLM alike) and then on the whole module;
  parameters, gradients and AdamW state live sharded, checkpoints are gathered into the same
  single-file format as a DDP run, and calls that do not enter through the root's ``forward``
  (evals, GSPO's rollout generation in ``batch_fn``) run with every unit's parameters gathered.
  Runs on gloo too (tested on CPU);
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

import contextlib
import copy
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

from ivl_embodied.train.config import OptimConfig, TrainConfig, to_dict

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


def batch_indices(n: int, step: int, seed: int, batch: int, accum: int, world: int, rank: int,
                  micro: int) -> np.ndarray:
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


def shard_module(module: nn.Module, mixed: bool = False) -> int:
    """FSDP2-shard ``module`` in place: every item of a ModuleList named ``layers``/``layer`` (the
    transformer layers of the ViT and the LLM), then the root. Returns the number of layer units."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                  reduce_dtype=torch.float32) if mixed else MixedPrecisionPolicy()
    units = [layer for name, child in module.named_modules()
             if isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer") for layer in child]
    for layer in units:
        fully_shard(layer, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    # Make ``module`` the root now. FSDP2 otherwise picks its root at the first forward, and our
    # stages call layers through non-forward paths first (an eval's generation, GSPO's rollouts),
    # which would make a layer its own root. (FSDP2 has no public call for this yet.)
    module._get_fsdp_state()._lazy_init()
    return len(units)


def _is_tied(module: nn.Module, key: str) -> bool:
    """Whether parameter ``key`` shares its tensor with another (tied embeddings: saved once)."""
    params = dict(module.named_parameters(remove_duplicate=False))
    p = params.get(key)
    return p is not None and sum(q is p for q in params.values()) > 1


class Trainer:
    """Runs ``cfg.steps`` optimizer steps of ``module`` with resumable checkpoints in ``out``."""

    def __init__(self, module: nn.Module, n_examples: int, batch_fn: BatchFn, out: str | Path,
                 train: TrainConfig, optim: OptimConfig, eval_fn: EvalFn | None = None,
                 save_fn: Callable[[nn.Module, Path], None] | None = None, accelerator=None,
                 progress: bool = True, stage: str = "train", batch_fn_uses_model: bool = False):
        self.cfg, self.optim_cfg = train, optim
        self.out = Path(out)
        self.n, self.batch_fn, self.eval_fn, self.save_fn = n_examples, batch_fn, eval_fn, save_fn
        self.stage, self.progress = stage, progress
        self.batch_fn_uses_model = batch_fn_uses_model  # GSPO samples in batch_fn: FSDP gathers for it
        self.acc = accelerator or make_accelerator(train)
        self.raw = module
        self.fsdp = bool(train.fsdp) and self.acc.num_processes > 1
        if train.fsdp and not self.fsdp:
            logger.warning("%s: --fsdp with one process: nothing to shard, training unsharded", stage)
        if self.fsdp:
            # a parameter-free copy for exporting the gathered weights at the end (plain module)
            self._export_template = copy.deepcopy(module).to("meta")
            units = shard_module(module.to(self.acc.device), mixed=self.acc.mixed_precision == "bf16")
        # under FSDP the optimizer is built over the sharded parameters
        decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=optim.lr, betas=(optim.beta1, optim.beta2))
        if self.fsdp:
            logger.info("%s: FSDP2 over %d processes, %d layer units + root (%s, device %s)", stage,
                        self.acc.num_processes, units, self.acc.distributed_type, self.acc.device)
            self.model, self.optimizer = module, optimizer
        else:
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
        if self.fsdp:  # collective: every rank takes part in gathering the full state
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
                get_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model_state = get_model_state_dict(self.model, options=opts)
            optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=opts)
        if self.is_main:
            tmp = final.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if self.fsdp:
                save_model(self._export_module(model_state), str(tmp / "model.safetensors"))
                torch.save(optim_state, tmp / "optimizer.pt")
            else:
                save_model(self.acc.unwrap_model(self.model), str(tmp / "model.safetensors"))
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(self._rng_state(), tmp / "rng.pt")
            state = {"step": self.step, "stage": self.stage, "train": to_dict(self.cfg),
                     "optim": to_dict(self.optim_cfg)}
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

    def _export_module(self, full_state: dict) -> nn.Module:
        """FSDP: a plain (unsharded, CPU) copy of the module holding ``full_state``."""
        plain = copy.deepcopy(self._export_template).to_empty(device="cpu")
        for m in plain.modules():  # moving to meta and back unties tied embeddings; transformers re-ties
            if hasattr(m, "tie_weights") and hasattr(m, "config"):
                m.tie_weights()
        missing, unexpected = plain.load_state_dict(full_state, strict=False)
        if unexpected or any(not _is_tied(plain, k) for k in missing):
            raise RuntimeError(f"gathered state does not fit the module: missing {missing}, unexpected {unexpected}")
        return plain

    def plain_model(self) -> nn.Module:
        """The trained module as a plain ``nn.Module`` (under FSDP: gathered, a collective call)."""
        if not self.fsdp:
            return self.acc.unwrap_model(self.model)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # no cpu_offload: with it only rank 0 would receive the gathered tensors
        return self._export_module(
            get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=False)))

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file, load_model

        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True, strict=False)
            set_model_state_dict(self.model, load_file(str(path / "model.safetensors")), options=opts)
            set_optimizer_state_dict(self.model, self.optimizer, torch.load(path / "optimizer.pt", weights_only=True),
                                     options=StateDictOptions(full_state_dict=True))
        else:
            load_model(self.acc.unwrap_model(self.model), str(path / "model.safetensors"), device=str(self.acc.device))
            self.optimizer.load_state_dict(
                torch.load(path / "optimizer.pt", map_location=self.acc.device, weights_only=True))
        self._set_rng_state(torch.load(path / "rng.pt", weights_only=True))
        self.step = int(json.loads((path / "state.json").read_text())["step"])
        self.rows = [r for r in self._read_rows() if r["step"] <= self.step]  # rows after the checkpoint are redone
        logger.info("resumed from %s at step %d", path, self.step)

    @staticmethod
    def _rng_state() -> dict:
        """Every generator's state as tensors, ints and tuples only, so a resume loads it with
        ``torch.load(weights_only=True)`` (no pickled code from a checkpoint directory is ever run)."""
        kind, key, pos, has_gauss, gauss = np.random.get_state()
        state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(key.astype(np.int64)), int(pos),
                                                        int(has_gauss), float(gauss)),
                 "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _set_rng_state(state: dict) -> None:
        random.setstate(state["python"])
        kind, key, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
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
            with torch.no_grad(), self.acc.autocast(), self._gathered():
                row.update({f"eval/{k}": v for k, v in self.eval_fn(self.acc.unwrap_model(self.model)).items()})
            self.model.train()
            logger.info("step %d eval %s", self.step, {k: round(v, 4) for k, v in row.items() if k != "step"})
            self.rows.append(row)

    @contextlib.contextmanager
    def _gathered(self):
        """FSDP: every unit's parameters gathered and kept for the duration, for calls that do not
        enter through the root's ``forward`` (generation, ``visuals``). Ranks generate different
        lengths, so per-layer all-gathers inside generation would not line up across ranks; with
        everything gathered up front (as TRL does for generation) no collective runs inside."""
        if not self.fsdp:
            yield
            return
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in self.model.modules() if isinstance(m, FSDPModule)]
        for m in units:
            m.unshard()
        self.model.set_reshard_after_forward(False, recurse=True)
        try:
            yield
        finally:
            self.model.set_reshard_after_forward(True, recurse=True)
            for m in units:
                m.reshard()

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
        bar = tqdm(total=end, initial=self.step, desc=self.stage, unit="step",
                   disable=not (self.progress and self.is_main))
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
                with self._gathered() if self.batch_fn_uses_model else nullcontext():
                    batch = self.batch_fn(batch_indices(self.n, self.step, self.cfg.seed, self.cfg.batch_size,
                                                        accum, world, rank, micro))
                sync = micro == accum - 1
                ctx = self.acc.no_sync(self.model) if (not sync and world > 1 and not self.fsdp) else nullcontext()
                with ctx, self.acc.autocast():
                    loss, m = self.model(batch)
                    self.acc.backward(loss / accum)
                for k, v in {"loss": float(loss.detach()), **m}.items():
                    metrics[k] = metrics.get(k, 0.0) + float(v) / accum
            # 4. clip
            if self.optim_cfg.grad_clip > 0:
                if self.fsdp:  # DTensor gradients: torch's clip computes the global norm across shards
                    norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.grad_clip)
                    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
                else:
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
            # every rank must take the same branch (save_checkpoint holds a barrier): look at
            # `latest` only once nobody can be writing it
            self.acc.wait_for_everyone()
            if self.latest_checkpoint() is None or self.latest_checkpoint().name != f"ckpt-{self.step:07d}":
                self.save_checkpoint()
            self.plot()
            plain = self.plain_model()  # every rank: gathering is collective under FSDP
            if self.save_fn is not None and self.is_main:
                self.save_fn(plain, self.out)
            self.acc.wait_for_everyone()
        else:  # stopped early on purpose: leave a checkpoint to resume from
            self._write_metrics()
            self.save_checkpoint()
        return last
