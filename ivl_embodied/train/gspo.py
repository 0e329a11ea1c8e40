"""GSPO: online RL of the whole planner with simulator rewards (InternVL3.5's last Cascade RL stage).

    ivl-embodied train gspo --init SFT_OR_MPO_DIR --data DIR --out OUT [--steps N] [--resume]

One rollout = for each of ``batch_size`` train prompts (chosen by the :class:`Trainer` from
(seed, step)), ``group_size`` plans sampled from the current policy with constrained decoding at
``temperature``, each with its own generator seed derived from (seed, step, rank, micro-step,
prompt, sample); so a rollout is a pure function of the weights and (seed, step) and a resumed run
redoes exactly what an uninterrupted one does. At sampling time the policy's per-token log-probs
of the sampled token ids (+ ``<|im_end|>``) are recorded, detached, as π_old. Rewards come from
:mod:`ivl_embodied.train.rewards` (parse + grounding IoU vs the oracle plan of the same scene +
simulated execution success), advantages are group-normalised
(:func:`~ivl_embodied.train.advantages.group_advantages`) and the loss is
:func:`~ivl_embodied.train.losses.gspo_loss`: PPO-style clip (ε = 3e-4 / 4e-4) of the sequence-level
ratio ``exp(mean token log-ratio)``, no KL, no reference model.

``epochs > 1`` runs that many optimizer steps on each rollout (π_old stays the sampling policy);
the rollout is kept in ``OUT/rollouts`` so a run resumed between them reuses it.

Caveats: π_old is the policy's own (T = 1, unconstrained) probability of the sampled tokens, as
in TRL; the sampler's temperature and the grammar constraint are not importance-corrected.
The result is written in the default-planner layout (``OUT/vision`` + ``OUT/language``), so
``ivl-embodied sim-eval --planner OUT`` runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ivl_embodied.language.planner import IM_END, GenerationSettings, LanguagePlanner
from ivl_embodied.train.advantages import group_advantages
from ivl_embodied.train.config import (
    OptimConfig,
    TrainConfig,
    add_run_arguments,
    configs_from_args,
    to_dict,
)
from ivl_embodied.train.losses import gspo_loss, pad_token_logps
from ivl_embodied.train.rewards import RewardBreakdown, RewardWeights, plan_reward
from ivl_embodied.train.sft import SFTModel, make_eval_fn, save_planner
from ivl_embodied.workers import check_workers, workers_from_flag

logger = logging.getLogger(__name__)

# (example index, plan text) -> reward (a float or a RewardBreakdown)
RewardFn = Callable[[int, str], "float | RewardBreakdown"]


@dataclass(frozen=True)
class GSPOConfig:
    """Rollout + loss settings (the loop itself is a :class:`TrainConfig`)."""

    group_size: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 160
    epsilon_low: float = 3e-4
    epsilon_high: float = 4e-4
    epochs: int = 1  # optimizer steps per rollout batch

    def __post_init__(self) -> None:
        for name in ("group_size", "max_new_tokens", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one has no advantage), got {self.group_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {self.temperature!r}")
        if not (0 <= self.epsilon_low < 1 and self.epsilon_high >= 0):
            raise ValueError(f"need 0 <= epsilon_low < 1 and epsilon_high >= 0, got {self.epsilon_low}, "
                             f"{self.epsilon_high}")


@dataclass
class Rollout:
    """One micro-step's samples: ``P`` prompts x ``G`` plans, flat ``[P*G]`` with groups contiguous."""

    indices: list[int]  # [P] example indices
    token_ids: list[tuple[int, ...]]  # [P*G] sampled plan tokens (without <|im_end|>)
    plans: list[str]  # [P*G]
    old_logps: list[torch.Tensor]  # [P*G] ragged [T_i], π_old, detached, on the CPU
    rewards: torch.Tensor  # [P*G]
    advantages: torch.Tensor  # [P*G]
    metrics: dict


def score_token_ids(planner: LanguagePlanner, visuals: Sequence[torch.Tensor], instructions: Sequence[str],
                    token_ids: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Per-token log-probs of exactly these token ids (+ ``<|im_end|>``) after each prompt; differentiable.

    Unlike :meth:`LanguagePlanner.score` the plan is not re-tokenised from text, so the log-probs
    are those of the tokens that were actually sampled.
    """
    end = planner.tokenizer.convert_tokens_to_ids(IM_END)
    vis = [planner._visual(v) for v in visuals]
    prompts = [planner.prompt_ids(v, ins) for v, ins in zip(vis, instructions, strict=True)]
    answers = [[*map(int, t), int(end)] for t in token_ids]
    length = max(len(p) + len(a) for p, a in zip(prompts, answers, strict=True))
    pad = planner.tokenizer.pad_token_id if planner.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(prompts), length), pad, dtype=torch.long)  # [B, L] right-padded
    att = torch.zeros((len(prompts), length), dtype=torch.long)  # [B, L]
    for b, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        ids[b, : len(p) + len(a)] = torch.tensor(p + a)
        att[b, : len(p) + len(a)] = 1
    ids, att = ids.to(planner.device), att.to(planner.device)
    logits = planner.lm(inputs_embeds=planner.splice(ids, vis), attention_mask=att).logits  # [B, L, V]
    out = []
    for b, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        logp = torch.log_softmax(logits[b, len(p) - 1 : len(p) + len(a) - 1].float(), dim=-1)  # [T_b, V]
        target = torch.tensor(a, device=logp.device)  # [T_b]
        out.append(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1))  # [T_b]
    return out


def sample_seed(*key: int) -> int:
    """A 32-bit generator seed that is a pure function of ``key`` (seed, step, rank, micro, prompt, sample)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


@torch.no_grad()
def collect_rollout(model: SFTModel, pixel_values: torch.Tensor, instructions: Sequence[str], indices: Sequence[int],
                    cfg: GSPOConfig, reward_fn: RewardFn, key: Sequence[int]) -> Rollout:
    """Sample ``G`` plans per prompt, record π_old, compute rewards and group advantages."""
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        visuals = model.visuals(pixel_values)  # P x [tokens, D]
        token_ids, plans, vis_flat, ins_flat, idx_flat = [], [], [], [], []
        for p, (vis, ins, idx) in enumerate(zip(visuals, instructions, indices, strict=True)):
            for g in range(cfg.group_size):
                settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                              seed=sample_seed(*key, p, g), constrained=True)
                out = model.planner.generate(vis, ins, settings)
                token_ids.append(out.token_ids)
                plans.append(out.text)
                vis_flat.append(vis)
                ins_flat.append(ins)
                idx_flat.append(int(idx))
        old = [t.detach().float().cpu() for t in score_token_ids(model.planner, vis_flat, ins_flat, token_ids)]
        t_gen = time.perf_counter()
        if hasattr(reward_fn, "many"):  # the whole rollout at once (SimReward: in parallel)
            results = reward_fn.many(list(zip(idx_flat, plans, strict=True)))
        else:
            results = [reward_fn(i, text) for i, text in zip(idx_flat, plans, strict=True)]
        t_rew = time.perf_counter()
    finally:
        model.train(was_training)
    rewards = torch.tensor([float(r.reward if isinstance(r, RewardBreakdown) else r) for r in results])  # [P*G]
    advantages = group_advantages(rewards, cfg.group_size)  # [P*G]
    grouped = rewards.view(-1, cfg.group_size)  # [P, G]
    n = len(plans)
    metrics = {"reward": float(rewards.mean()), "reward_std_in_group": float(grouped.std(dim=1).mean()),
               "zero_adv_groups": float((grouped == grouped[:, :1]).all(dim=1).float().mean()),
               "plan_tokens": float(np.mean([len(t) for t in token_ids])),
               "sample_s": t_gen - t0, "reward_s": t_rew - t_gen, "episodes_per_s": n / max(t_rew - t0, 1e-9)}
    if results and all(isinstance(r, RewardBreakdown) for r in results):
        metrics.update(parsed=float(np.mean([r.parsed for r in results])),
                       grounding=float(np.mean([r.grounding for r in results])),
                       success=float(np.mean([r.success for r in results])))
    return Rollout([int(i) for i in indices], token_ids, plans, old, rewards, advantages, metrics)


class GSPOPolicy(SFTModel):
    """The planner; ``forward(batch)`` with ``batch = {"pixel_values", "instructions", "rollout"}``."""

    def __init__(self, encoder, planner, tiles_per_image: int = 1, config: GSPOConfig = GSPOConfig()):
        super().__init__(encoder, planner, tiles_per_image)
        self.gspo = config

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        ro: Rollout = batch["rollout"]
        G = self.gspo.group_size
        visuals = self.visuals(batch["pixel_values"])  # P x [tokens, D], differentiable
        vis_flat = [v for v in visuals for _ in range(G)]  # [P*G]
        ins_flat = [s for s in batch["instructions"] for _ in range(G)]  # [P*G]
        new = score_token_ids(self.planner, vis_flat, ins_flat, ro.token_ids)  # [P*G] x [T_i]
        token_logps, mask = pad_token_logps(new)  # [B, T], [B, T]
        old_logps, _ = pad_token_logps([o.to(token_logps.device) for o in ro.old_logps])  # [B, T]
        out = gspo_loss(token_logps, old_logps, ro.advantages.to(token_logps.device), mask,
                        epsilon_low=self.gspo.epsilon_low, epsilon_high=self.gspo.epsilon_high)
        metrics = {**ro.metrics, "ratio_mean": float(out.ratio.mean()),
                   "ratio_dev_max": float((out.ratio - 1).abs().max()), "clip_frac": float(out.clipped.float().mean())}
        return out.loss, metrics


class RolloutSource:
    """The Trainer's ``batch_fn``: rolls out at every ``epochs``-th step, reuses the rollout in between."""

    def __init__(self, model: GSPOPolicy, data, reward_fn: RewardFn, cfg: GSPOConfig, seed: int, out: Path,
                 rank: int = 0):
        self.model, self.data, self.reward_fn, self.cfg, self.seed = model, data, reward_fn, cfg, seed
        self.dir, self.rank = out / "rollouts", rank
        self.trainer = None  # set after the Trainer exists: its ``step`` is the step being computed
        self._step, self._micro = -1, 0

    def _path(self, step: int, micro: int) -> Path:
        return self.dir / f"rank{self.rank}-step{step:07d}-micro{micro}.pt"

    def __call__(self, indices: np.ndarray) -> dict:
        step = self.trainer.step
        self._micro = self._micro + 1 if step == self._step else 0
        self._step = step
        start = step - step % self.cfg.epochs  # the step whose policy sampled this rollout
        path = self._path(start, self._micro)
        if step == start:
            with self.trainer.acc.autocast():  # π_old under the same precision as the loss's forward
                ro = collect_rollout(self.model, self.data.pixel_values(indices),
                                     [self.data.examples[i].instruction for i in indices], list(indices),
                                     self.cfg, self.reward_fn, (self.seed, start, self.rank, self._micro))
            if self.cfg.epochs > 1:  # keep it for the other epochs (and for a resume between them)
                self.dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(ro.__dict__, tmp)
                os.replace(tmp, path)
                for old in self.dir.glob(f"rank{self.rank}-step*.pt"):
                    if int(old.name.split("-step")[1][:7]) < start:
                        old.unlink(missing_ok=True)
        else:
            if not path.is_file():
                raise RuntimeError(f"step {step} reuses the rollout of step {start} but {path} is missing")
            ro = Rollout(**torch.load(path, weights_only=True))
        idx = ro.indices
        return {"pixel_values": self.data.pixel_values(idx), "instructions": [self.data.examples[i].instruction
                                                                               for i in idx], "rollout": ro}


class SimReward:
    """Reward of (example index, plan) from :func:`plan_reward`, memoised (it is deterministic).

    ``many(items)`` scores a whole rollout; with ``workers > 1`` the episodes it has not seen run
    in a pool of that many processes (started on first use, ended by :meth:`close`)."""

    def __init__(self, data, weights: RewardWeights, workers: int = 1):
        self.data, self.weights, self.workers = data, weights, check_workers(workers)
        self.cache: dict[tuple[int, str], RewardBreakdown] = {}
        self._pool = None

    def _job(self, index: int, text: str) -> tuple:
        ex = self.data.examples[index]
        return text, {"seed": ex.seed, "instruction": ex.instruction, "goal": ex.goal}, ex.plan, self.weights

    def _remember(self, key: tuple[int, str], value: RewardBreakdown) -> None:
        self.cache[key] = value
        if len(self.cache) > 50_000:
            self.cache.pop(next(iter(self.cache)))

    def __call__(self, index: int, text: str) -> RewardBreakdown:
        return self.many([(index, text)])[0]

    def many(self, items: Sequence[tuple[int, str]]) -> list[RewardBreakdown]:
        todo = list(dict.fromkeys(k for k in items if k not in self.cache))  # unseen, each once, in order
        if len(todo) > 1 and self.workers > 1 and self.weights.execute:  # IoU alone is cheap
            if self._pool is None:
                import multiprocessing as mp

                # spawn: fresh interpreters, no GL context or torch threads inherited
                self._pool = mp.get_context("spawn").Pool(self.workers)
            values = self._pool.starmap(plan_reward, [self._job(*k) for k in todo])
        else:
            values = [plan_reward(*self._job(*k)) for k in todo]
        fresh = dict(zip(todo, values, strict=True))
        for k, v in fresh.items():
            self._remember(k, v)
        return [fresh[k] if k in fresh else self.cache[k] for k in items]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


def make_sim_reward_fn(data, weights: RewardWeights, workers: int = 1) -> SimReward:
    """The simulator reward for ``data``'s examples (:class:`SimReward`)."""
    return SimReward(data, weights, workers)


def train_gspo(init: str | Path, data_dir: str | Path, out: str | Path, gspo_cfg: GSPOConfig | None = None,
               train_cfg: TrainConfig | None = None, optim_cfg: OptimConfig | None = None,
               reward_weights: RewardWeights | None = None, reward_fn: RewardFn | None = None,
               resume: bool = False, stop_after: int | None = None, progress: bool = True,
               reward_workers: int = 1) -> dict:
    """Run GSPO from the planner in ``init``; returns the last logged row. ``reward_fn`` overrides
    the simulator reward (tests); otherwise rollouts are simulated in ``reward_workers`` processes."""
    from ivl_embodied.checkpoints.internvl import load_language, load_vision
    from ivl_embodied.train.data import PlanDataset
    from ivl_embodied.train.trainer import Trainer, make_accelerator

    gspo_cfg, train_cfg = gspo_cfg or GSPOConfig(), train_cfg or TrainConfig(steps=200, batch_size=4)
    optim_cfg = optim_cfg or OptimConfig(lr=1e-5, warmup_steps=10, weight_decay=0.0)
    reward_weights = reward_weights or RewardWeights()
    init, out = Path(init), Path(out)
    for sub in ("vision", "language"):
        if not (init / sub).is_dir():
            raise FileNotFoundError(f"--init {str(init)!r} has no {sub}/: give an SFT or MPO output directory")
    data = PlanDataset(data_dir)
    if len(data) <= train_cfg.holdout:
        raise ValueError(f"{len(data)} examples leave nothing to train on after holding back {train_cfg.holdout}")
    acc = make_accelerator(train_cfg)
    encoder, planner = load_vision(init / "vision"), load_language(init / "language")
    if encoder.config.tile_size != data.tile_size:
        raise ValueError(f"--init's encoder takes {encoder.config.tile_size}-px tiles but the data has "
                         f"{data.tile_size}-px tiles")
    model = GSPOPolicy(encoder, planner, data.tiles_per_image, gspo_cfg)
    n_train = len(data) - train_cfg.holdout
    holdout = list(range(n_train, len(data)))
    out.mkdir(parents=True, exist_ok=True)
    if acc.is_main_process:
        (out / "config.json").write_text(json.dumps(
            {"init": str(init), "gspo": to_dict(gspo_cfg), "train": to_dict(train_cfg), "optim": to_dict(optim_cfg),
             "reward": to_dict(reward_weights) if reward_fn is None else "custom", "data": str(data_dir),
             "data_content_hash": data.manifest["content_hash"]}, indent=2))
    sim_reward = make_sim_reward_fn(data, reward_weights, reward_workers) if reward_fn is None else None
    source = RolloutSource(model, data, reward_fn or sim_reward, gspo_cfg, train_cfg.seed, out, acc.process_index)
    trainer = Trainer(
        model, n_train, source, out, train_cfg, optim_cfg, accelerator=acc, progress=progress, stage="gspo",
        batch_fn_uses_model=True,
        eval_fn=make_eval_fn(data, holdout, train_cfg.eval_examples, train_cfg.batch_size) if holdout else None,
        save_fn=lambda m, o: save_planner(m, o, {"trained_by": "ivl-embodied train gspo", "init": str(init),
                                                 "steps": train_cfg.steps,
                                                 "data_content_hash": data.manifest["content_hash"]}))
    source.model = acc.unwrap_model(trainer.model)  # the prepared (device-placed) module
    source.trainer = trainer
    try:
        return trainer.fit(resume=resume, stop_after=stop_after)
    finally:
        if sim_reward is not None:
            sim_reward.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    c, w = GSPOConfig(), RewardWeights()
    # defaults: the default planner's recipe on our 2-core CPU (see the README's Cascade RL table)
    add_run_arguments(parser, TrainConfig(steps=30, batch_size=2, eval_interval=15, checkpoint_interval=15,
                                          log_interval=1, eval_examples=16, holdout=64, dtype="fp32"),
                      # weight decay 0: a step whose advantages are all zero changes nothing
                      OptimConfig(lr=1e-5, warmup_steps=10, weight_decay=0.0, grad_clip=1.0),
                      init_help="starting planner: an SFT or MPO output directory",
                      data_help="dataset directory from `train data` (prompts + oracle plans)")
    g = parser.add_argument_group("rollout")
    g.add_argument("--group-size", type=int, default=c.group_size, help="plans sampled per prompt (G)")
    g.add_argument("--temperature", type=float, default=c.temperature)
    g.add_argument("--max-new-tokens", type=int, default=c.max_new_tokens)
    g.add_argument("--epochs", type=int, default=c.epochs, help="optimizer steps per rollout batch")
    g.add_argument("--epsilon-low", type=float, default=c.epsilon_low)
    g.add_argument("--epsilon-high", type=float, default=c.epsilon_high)
    g = parser.add_argument_group("reward")
    g.add_argument("--no-execute", action="store_true", help="IoU-only reward: skip the simulated execution")
    g.add_argument("--reward-workers", type=int, default=0,
                   help="processes that simulate a rollout's plans (0: one per CPU core)")
    g.add_argument("--w-parse", type=float, default=w.parse)
    g.add_argument("--w-grounding", type=float, default=w.grounding)
    g.add_argument("--w-success", type=float, default=w.success)


def run(args: argparse.Namespace) -> int:
    gspo_cfg = GSPOConfig(group_size=args.group_size, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                          epsilon_low=args.epsilon_low, epsilon_high=args.epsilon_high, epochs=args.epochs)
    train_cfg, optim_cfg = configs_from_args(args)
    weights = RewardWeights(parse=args.w_parse, grounding=args.w_grounding, success=args.w_success,
                            execute=not args.no_execute)
    last = train_gspo(args.init, args.data, args.out, gspo_cfg, train_cfg, optim_cfg, weights, resume=args.resume,
                      stop_after=args.stop_after, progress=not args.no_progress,
                      reward_workers=workers_from_flag("--reward-workers", args.reward_workers))
    print(json.dumps(last))
    return 0
