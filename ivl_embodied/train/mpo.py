"""MPO: offline RL of the whole planner (ViT + projector + LLM) on simulator-scored preference pairs.

    ivl-embodied train mpo --data DIR --init SFT_OUT --out OUT [--steps N] [--resume]

1. **Pairs** (:func:`build_pairs`). For each training prompt of the data (the SFT holdout is left
   out), the candidates are ``samples`` plans sampled from the starting planner (constrained
   decoding, ``temperature > 0``, seeded per prompt and sample), synthetic negatives derived from
   the oracle plan (the right object named with another object's box, another object of the
   scene, another target, the object's box shifted off the object) and the oracle plan itself.
   Every distinct candidate is **run in the simulator**
   (:func:`~ivl_embodied.sim.episode.run_episode` with a fixed-text planner) and scored by the
   task's success predicate. ``chosen`` = the first succeeding sample, else the oracle plan;
   ``rejected`` = the first failing sample, else the first failing synthetic negative. Pairs are
   cached in ``OUT/pairs.jsonl`` (+ ``pairs.meta.json`` holding the fingerprint and the speed);
   everything is a function of the seeds, so a rerun with the same inputs reuses the cache, and a
   half-built file is continued prompt by prompt.
2. **Training** (:class:`MPOModel`): the policy starts from ``--init`` (an SFT output, loaded with
   the same classes SFT saves), the frozen reference is a copy of it; each batch computes the
   reference's sequence log-probs under ``no_grad`` and :func:`~ivl_embodied.train.losses.mpo_loss`
   (0.8·DPO-sigmoid + 0.2·BCO-pair + 1.0·SFT, β = 0.1, BCO shift δ = 0 as in TRL 1.16). The loop,
   checkpoints, metrics and resume are :class:`~ivl_embodied.train.trainer.Trainer`'s. The result is
   written in the default-planner layout, so ``ivl-embodied sim-eval --planner OUT`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ivl_embodied.sim.episode import JUDGE_SETTLE_S
from ivl_embodied.train.config import (
    OptimConfig,
    TrainConfig,
    add_run_arguments,
    configs_from_args,
    to_dict,
)
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.losses import MPOWeights, masked_sum, mpo_loss, pad_token_logps
from ivl_embodied.train.sft import SFTModel, load_policy, make_eval_fn, save_planner
from ivl_embodied.workers import check_workers, threads_per_worker, workers_from_flag

logger = logging.getLogger(__name__)

PAIRS_FORMAT = "ivl_embodied.train.mpo.pairs/1"
# other_box first: the named object boxed on another one is the error a trained planner still makes
NEGATIVES = ("other_box", "wrong_object", "wrong_target", "shifted_box")


# -- configs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairConfig:
    """How preference pairs are drawn: ``samples`` seeded samples per prompt + synthetic negatives."""

    samples: int = 4
    temperature: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    prompts: int | None = None  # first N training prompts (None: all)
    negatives: tuple[str, ...] = NEGATIVES
    seed: int = 0
    settle_s: float = JUDGE_SETTLE_S  # run_episode's settle time after execution

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ValueError(f"samples must be an int >= 0, got {self.samples!r}")
        if self.samples and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0 for sampling, got {self.temperature!r}")
        if self.prompts is not None and (not isinstance(self.prompts, int) or self.prompts <= 0):
            raise ValueError(f"prompts must be a positive int or None, got {self.prompts!r}")
        object.__setattr__(self, "negatives", tuple(self.negatives))
        unknown = [n for n in self.negatives if n not in NEGATIVES]
        if unknown:
            raise ValueError(f"unknown negatives {unknown}; expected some of {NEGATIVES}")
        if not 1 <= self.max_new_tokens <= 8192:
            raise ValueError(f"max_new_tokens must be in 1..8192, got {self.max_new_tokens!r}")


@dataclass(frozen=True)
class MPOConfig:
    """The loss: β and the preference / quality / generation weights."""

    beta: float = 0.1
    weights: MPOWeights = MPOWeights()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be finite and > 0, got {self.beta!r}")


def planner_hash(init: str | Path) -> str:
    """sha256 over a planner's weight files (the pair cache is only valid for the same start)."""
    from ivl_embodied.checkpoints.planner import planner_dirs

    vision_dir, language_dir = planner_dirs(init)
    h = hashlib.sha256()
    for p in sorted([*vision_dir.rglob("*.safetensors"), *language_dir.rglob("*.safetensors")]):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# -- candidates ----------------------------------------------------------------------------------
def _task(example):
    from ivl_embodied.sim.tasks import parse_task

    return parse_task({"seed": example.seed, "instruction": example.instruction, "goal": example.goal})


def synthetic_negatives(task, oracle_text: str, kinds=NEGATIVES) -> dict[str, str]:
    """Plans derived from the oracle plan that do the wrong thing: ``{kind: plan text}``.

    Boxes of other objects come from the settled scene, projected exactly as the oracle does.
    A kind is left out when the scene offers no way to build it.
    """
    from ivl_embodied.plan.schema import GROUNDING_MAX, Plan, format_plan, parse_plan
    from ivl_embodied.sim.oracle import object_box
    from ivl_embodied.sim.sim_robot import SimRobot
    from ivl_embodied.sim.tasks import OBJECT_SHAPES, TARGET_SHAPES, scene_for
    from ivl_embodied.sim.world import SimWorld

    plan = parse_plan(oracle_text)
    goal = task.goal
    world = SimWorld(scene_for(task))
    try:
        SimRobot(world).hold(0.2)  # the view the planner saw (as run_episode / the data)
        sc = world.scene
        obj = sc.find(goal.object.color, goal.object.shape)
        tgt = sc.find(goal.target.color, goal.target.shape)
        others = [o for o in sc.objects if o.name not in (obj.name, tgt.name)]
        obj_like = [o for o in others if o.kind in OBJECT_SHAPES[goal.type]]
        # prefer the same kind of target; any other object in the scene is a wrong target too
        tgt_like = [o for o in others if o.kind in TARGET_SHAPES[goal.type]] or [o for o in others if o not in obj_like]
        tgt_like = tgt_like or obj_like[1:]
        boxes = {o.name: object_box(world, o) for o in obj_like + tgt_like}
    finally:
        world.close()
    out: dict[str, str] = {}
    if "other_box" in kinds and obj_like:  # names the right object, boxes another: grounding picks that one
        named, box = plan.steps[0].object, boxes[obj_like[0].name]
        steps = tuple(dataclasses.replace(s, box=box) if s.box is not None and s.object == named else s
                      for s in plan.steps)
        out["other_box"] = format_plan(Plan(steps))
    if "wrong_object" in kinds and obj_like:
        o = obj_like[0]
        steps = tuple(dataclasses.replace(s, object=o.phrase, box=boxes[o.name] if s.box is not None else None)
                      for s in plan.steps)
        out["wrong_object"] = format_plan(Plan(steps))
    if "wrong_target" in kinds and tgt_like:
        t = tgt_like[0]
        steps = tuple(dataclasses.replace(s, target=t.phrase, target_box=boxes[t.name]) if s.target else s
                      for s in plan.steps)
        out["wrong_target"] = format_plan(Plan(steps))
    if "shifted_box" in kinds:
        first = plan.steps[0]
        x1, y1, x2, y2 = first.box
        dx = (x2 - x1) + 40  # clear of the object by 4 % of the image width
        if x2 + dx > GROUNDING_MAX:
            dx = -dx
        shifted = (x1 + dx, y1, x2 + dx, y2)
        if min(shifted) >= 0 and max(shifted) <= GROUNDING_MAX:
            steps = (dataclasses.replace(first, box=shifted), *plan.steps[1:])
            out["shifted_box"] = format_plan(Plan(steps))
    return out


def sample_seed(base: int, example_seed: int, k: int) -> int:
    """Seed of sample ``k`` of a prompt: a pure function of (base seed, task seed, k)."""
    return int(np.random.SeedSequence([base, example_seed, k]).generate_state(1)[0])


@torch.no_grad()
def sample_plans(model: SFTModel, data: PlanDataset, index: int, cfg: PairConfig) -> list[str]:
    """``cfg.samples`` constrained, seeded samples of the planner for example ``index``."""
    from ivl_embodied.language.planner import GenerationSettings

    if not cfg.samples:
        return []
    was_training = model.training
    model.eval()
    ex = data.examples[index]
    visual = model.visuals(data.pixel_values([index]))[0]  # [tokens, D]
    texts = []
    for k in range(cfg.samples):
        settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                      top_k=cfg.top_k, seed=sample_seed(cfg.seed, ex.seed, k), constrained=True)
        texts.append(model.planner.generate(visual, ex.instruction, settings).text)
    model.train(was_training)
    return texts


def score_in_sim(task, text: str, settle_s: float) -> dict:
    """Run ``text`` as the plan of ``task`` in the simulator: success, stage, reason."""
    from ivl_embodied.sim.episode import run_episode
    from ivl_embodied.sim.planners import FixedPlanner

    r = run_episode(task, FixedPlanner(text), settle_s=settle_s)
    return {"success": bool(r.success), "stage": r.stage, "reason": r.reason[:200]}


def pair_for_example(model: SFTModel, data: PlanDataset, index: int, cfg: PairConfig) -> dict:
    """The candidates of one prompt and the chosen / rejected pick, running only what decides it.

    Samples are scored in the simulator in order until one succeeds and one fails; the oracle plan
    is run only when no sample succeeds, and the synthetic negatives (built, then run in order) only
    when no sample fails. A candidate that was not needed carries ``"success": None``."""
    ex = data.examples[index]
    task = _task(ex)
    scored: dict[str, dict] = {}  # identical texts are run once

    def score(c: dict) -> dict:
        if c["text"] not in scored:
            scored[c["text"]] = score_in_sim(task, c["text"], cfg.settle_s)
        c.update(scored[c["text"]])
        return c

    samples = [{"source": f"sample{k}", "text": t} for k, t in enumerate(sample_plans(model, data, index, cfg))]
    chosen = rejected = None
    for c in samples:
        score(c)
        if c["success"] and chosen is None:
            chosen = c
        if not c["success"] and rejected is None:
            rejected = c
        if chosen is not None and rejected is not None:
            break
    oracle = {"source": "oracle", "text": ex.plan}
    if chosen is None:
        chosen = oracle if score(oracle)["success"] else None
    synthetic = []
    if rejected is None and chosen is not None:
        synthetic = [{"source": k, "text": t} for k, t in synthetic_negatives(task, ex.plan, cfg.negatives).items()]
        rejected = next((c for c in synthetic if not score(c)["success"]), None)
    candidates = samples + synthetic + [oracle]
    for c in candidates:
        c.setdefault("success", None)
    record = {"index": index, "seed": ex.seed, "instruction": ex.instruction, "goal": ex.goal,
              "candidates": candidates, "episodes": len(scored)}
    if chosen is None or rejected is None:
        record["skipped"] = "no candidate succeeded" if chosen is None else "no candidate failed"
        return record
    record.update(chosen=chosen["text"], chosen_source=chosen["source"], rejected=rejected["text"],
                  rejected_source=rejected["source"])
    return record


def pairs_fingerprint(data: PlanDataset, indices: list[int], cfg: PairConfig, init_hash: str) -> str:
    key = {"format": PAIRS_FORMAT, "data": data.manifest["content_hash"], "indices": indices,
           "pairs": to_dict(cfg), "init": init_hash}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


_pair_worker: tuple | None = None  # (policy, data, cfg) of a pair-building worker process


def _init_pair_worker(init: str, data_dir: str, cfg: PairConfig, threads: int) -> None:
    global _pair_worker
    torch.set_num_threads(threads)
    _pair_worker = (load_policy(init), PlanDataset(data_dir), cfg)


def _pair_job(index: int) -> dict:
    model, data, cfg = _pair_worker
    return pair_for_example(model, data, index, cfg)


def build_pairs(model: SFTModel, data: PlanDataset, indices: list[int], cfg: PairConfig, path: str | Path,
                init_hash: str = "", progress: bool = True, workers: int = 1,
                init: str | Path | None = None) -> list[dict]:
    """Preference pairs for ``indices`` in JSONL ``path`` (reused when the fingerprint matches).

    Returns every record, skipped prompts included (they carry ``"skipped"``); train on the
    records that have ``chosen``. ``path``'s sibling ``<stem>.meta.json`` says how fast it went.

    ``workers > 1`` builds prompts in that many processes, each loading the planner from ``init``
    (the directory ``model`` came from) and the data; a prompt's record depends only on its
    seeds, so the records are those of one process, written in order.
    """
    check_workers(workers)
    if workers > 1 and init is None:
        raise ValueError("building pairs with workers > 1 needs init, the planner directory each worker loads")
    from tqdm import tqdm

    path = Path(path)
    meta_path = path.with_name(path.stem + ".meta.json")
    fp = pairs_fingerprint(data, indices, cfg, init_hash)
    if path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()).get("fingerprint") == fp:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        logger.info("reusing %d cached pair records in %s", len(records), path)
        return records
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial_fp = path.with_name(path.name + ".partial.fingerprint")
    done: list[dict] = []
    if partial.is_file() and partial_fp.is_file() and partial_fp.read_text().strip() == fp:
        for line in partial.read_text().splitlines():  # a torn last line is dropped and redone
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:
                break
        done = [r for r, i in zip(done, indices, strict=False) if r["index"] == i]
        logger.info("continuing pair building after %d prompts", len(done))
    partial.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in done))
    partial_fp.write_text(fp)
    t0, episodes, resumed = time.perf_counter(), 0, len(done)
    todo = indices[len(done):]
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open(partial, "a"))
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            threads = threads_per_worker(workers)
            pool = stack.enter_context(mp.get_context("spawn").Pool(
                min(workers, len(todo)), _init_pair_worker, (str(init), str(data.root), cfg, threads)))
            records = pool.imap(_pair_job, todo)  # in order: the partial file stays a prefix of indices
        else:
            records = (pair_for_example(model, data, i, cfg) for i in todo)
        for rec in tqdm(records, total=len(todo), desc="pairs", unit="prompt", disable=not progress):
            episodes += rec["episodes"]
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            done.append(rec)
    wall = time.perf_counter() - t0
    n_pairs = sum("chosen" in r for r in done)
    new_pairs = sum("chosen" in r for r in done[resumed:])
    meta = {"format": PAIRS_FORMAT, "fingerprint": fp, "config": to_dict(cfg), "prompts": len(done),
            "pairs": n_pairs, "skipped": len(done) - n_pairs,
            "oracle_chosen": sum(r.get("chosen_source") == "oracle" for r in done),
            "build_wall_s": round(wall, 2), "episodes_run": episodes,
            "pairs_per_s": round(new_pairs / wall, 3) if wall > 0 else None,
            "episodes_per_s": round(episodes / wall, 3) if wall > 0 else None}
    os.replace(partial, path)
    partial_fp.unlink(missing_ok=True)
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)
    logger.info("built %d pairs from %d prompts in %.1f s (%.3f pairs/s, %d episodes)", n_pairs, len(done), wall,
                meta["pairs_per_s"] or 0.0, episodes)
    return done


# -- training ------------------------------------------------------------------------------------
class MPOModel(nn.Module):
    """Trainable policy + frozen reference: ``forward(batch) -> (MPO loss, metrics)``."""

    def __init__(self, policy: SFTModel, cfg: MPOConfig = MPOConfig()):
        super().__init__()
        self.policy, self.cfg = policy, cfg
        self.reference = copy.deepcopy(policy)
        self.reference.requires_grad_(False)
        self.reference.eval()

    def train(self, mode: bool = True) -> MPOModel:
        super().train(mode)
        self.reference.eval()  # the reference never drops out
        return self

    @staticmethod
    def _sequence_logps(model: SFTModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token log-probs of chosen and rejected: ``([B, Tc], mask, [B, Tr], mask)``."""
        visuals = model.visuals(batch["pixel_values"])  # B x [tokens, D], shared by both responses
        n = len(visuals)
        token_logps = model.planner.score(visuals + visuals, batch["instructions"] * 2,
                                          batch["chosen"] + batch["rejected"])  # 2B ragged [T_i]
        chosen, chosen_mask = pad_token_logps(token_logps[:n])  # [B, Tc]
        rejected, rejected_mask = pad_token_logps(token_logps[n:])  # [B, Tr]
        return chosen, chosen_mask, rejected, rejected_mask

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            ref_c, ref_cm, ref_r, ref_rm = self._sequence_logps(self.reference, batch)
            ref_chosen = masked_sum(ref_c, ref_cm)  # [B]
            ref_rejected = masked_sum(ref_r, ref_rm)  # [B]
        pol_c, pol_cm, pol_r, pol_rm = self._sequence_logps(self.policy, batch)
        out = mpo_loss(pol_c, pol_cm, pol_r, pol_rm, ref_chosen, ref_rejected, beta=self.cfg.beta,
                       weights=self.cfg.weights)
        margin = out.chosen_rewards - out.rejected_rewards  # [B]
        return out.total, {"preference": float(out.preference.detach()), "quality": float(out.quality.detach()),
                           "generation": float(out.generation.detach()), "reward_margin": float(margin.mean()),
                           "reward_acc": float((margin > 0).float().mean()),
                           "chosen_reward": float(out.chosen_rewards.mean()),
                           "rejected_reward": float(out.rejected_rewards.mean())}


def pair_batch_fn(data: PlanDataset, pairs: list[dict]):
    """Trainer batch function over the usable pairs."""

    def batch_fn(indices) -> dict:
        recs = [pairs[int(i)] for i in indices]
        return {"pixel_values": data.pixel_values([r["index"] for r in recs]),
                "instructions": [r["instruction"] for r in recs],
                "chosen": [r["chosen"] for r in recs], "rejected": [r["rejected"] for r in recs]}

    return batch_fn


@torch.no_grad()
def logp_margin(model: SFTModel, data: PlanDataset, pairs: list[dict]) -> torch.Tensor:
    """``[P]`` log π(chosen) - log π(rejected) per pair (sequence sums)."""
    batch = pair_batch_fn(data, pairs)(range(len(pairs)))
    c, cm, r, rm = MPOModel._sequence_logps(model, batch)
    return masked_sum(c, cm) - masked_sum(r, rm)


def make_mpo_eval_fn(data: PlanDataset, pairs: list[dict], holdout: list[int], train_cfg: TrainConfig):
    """Reward accuracy / margin on the first training pairs + SFT's held-out plan metrics."""
    plan_eval = make_eval_fn(data, holdout, train_cfg.eval_examples, train_cfg.batch_size) if holdout else None
    probe = pairs[: max(train_cfg.eval_examples, 1)]

    def evaluate(model: MPOModel) -> dict:
        out = {}
        if probe:
            _, m = model(pair_batch_fn(data, probe)(range(len(probe))))
            out.update({f"pairs_{k}": v for k, v in m.items() if k in ("reward_margin", "reward_acc")})
        if plan_eval is not None:
            out.update(plan_eval(model.policy))
        return out

    return evaluate


def train_mpo(data_dir: str | Path, init: str | Path, out: str | Path, pair_cfg: PairConfig | None = None,
              mpo_cfg: MPOConfig | None = None, train_cfg: TrainConfig | None = None,
              optim_cfg: OptimConfig | None = None, pairs_path: str | Path | None = None, resume: bool = False,
              stop_after: int | None = None, progress: bool = True, pair_workers: int = 1) -> dict:
    """Build (or reuse) the pairs (``pair_workers`` processes, see :func:`build_pairs`), then run
    MPO; returns the last logged row."""
    from ivl_embodied.train.trainer import Trainer, make_accelerator

    pair_cfg, mpo_cfg = pair_cfg or PairConfig(), mpo_cfg or MPOConfig()
    train_cfg, optim_cfg = train_cfg or TrainConfig(), optim_cfg or OptimConfig()
    out = Path(out)
    data = PlanDataset(data_dir)
    if data.manifest["config"].get("split") != "train":
        split = data.manifest["config"].get("split")
        raise ValueError(f"MPO trains on train-split data; {str(data_dir)!r} is {split!r}")
    n_prompts = len(data) - train_cfg.holdout
    if n_prompts <= 0:
        raise ValueError(f"{len(data)} examples leave no prompts after holding back {train_cfg.holdout}")
    indices = list(range(min(n_prompts, pair_cfg.prompts or n_prompts)))
    holdout = list(range(n_prompts, len(data)))
    acc = make_accelerator(train_cfg)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_cfg.seed)
    policy = load_policy(init)
    if policy.encoder.config.tile_size != data.tile_size or policy.tiles_per_image != data.tiles_per_image:
        raise ValueError(f"planner {str(init)!r} takes {policy.encoder.config.tile_size}-px tiles x "
                         f"{policy.tiles_per_image} but the data has {data.tile_size}-px x {data.tiles_per_image}")
    init_hash = planner_hash(init)
    pairs_path = Path(pairs_path) if pairs_path is not None else out / "pairs.jsonl"
    # every rank builds the same pairs deterministically would waste the sim: rank 0 builds, the rest read
    if acc.is_main_process:
        build_pairs(policy, data, indices, pair_cfg, pairs_path, init_hash, progress, workers=pair_workers, init=init)
    acc.wait_for_everyone()
    records = build_pairs(policy, data, indices, pair_cfg, pairs_path, init_hash, progress=False)
    pairs = [r for r in records if "chosen" in r]
    if not pairs:
        raise ValueError(f"no usable preference pairs in {pairs_path} ({len(records)} prompts, all skipped)")
    model = MPOModel(policy, mpo_cfg)
    if acc.is_main_process:
        (out / "config.json").write_text(json.dumps(
            {"pairs": to_dict(pair_cfg), "mpo": {"beta": mpo_cfg.beta, "weights": to_dict(mpo_cfg.weights)},
             "train": to_dict(train_cfg), "optim": to_dict(optim_cfg), "data": str(data_dir), "init": str(init),
             "init_hash": init_hash, "data_content_hash": data.manifest["content_hash"]}, indent=2))
    logger.info("MPO: %d pairs from %d prompts; %.2f M trainable parameters", len(pairs), len(records),
                sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
    trainer = Trainer(
        model, len(pairs), pair_batch_fn(data, pairs), out, train_cfg, optim_cfg, accelerator=acc,
        progress=progress, stage="mpo", eval_fn=make_mpo_eval_fn(data, pairs, holdout, train_cfg),
        save_fn=lambda m, o: save_planner(m.policy, o, {"trained_by": "ivl-embodied train mpo", "init": str(init),
                                                        "steps": train_cfg.steps, "pairs": len(pairs),
                                                        "data_content_hash": data.manifest["content_hash"]}))
    return trainer.fit(resume=resume, stop_after=stop_after)


# -- CLI -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = PairConfig()
    # defaults: the default planner's recipe on our 2-core CPU (see the README's Cascade RL table)
    add_run_arguments(parser, TrainConfig(steps=120, batch_size=8, eval_interval=40, checkpoint_interval=40,
                                          eval_examples=8), OptimConfig(lr=1e-4, warmup_steps=20),
                      init_help="starting planner: an SFT output directory",
                      data_help="train-split dataset directory from `train data`")
    parser.add_argument("--pairs", default=None, help="preference-pair cache (default OUT/pairs.jsonl)")
    g = parser.add_argument_group("preference pairs")
    g.add_argument("--samples", type=int, default=p.samples, help="sampled plans per prompt")
    g.add_argument("--temperature", type=float, default=p.temperature)
    g.add_argument("--top-k", type=int, default=p.top_k)
    g.add_argument("--max-new-tokens", type=int, default=p.max_new_tokens)
    g.add_argument("--prompts", type=int, default=120, help="use only the first N training prompts (0: all)")
    g.add_argument("--negatives", default=",".join(p.negatives), help=f"comma list of {','.join(NEGATIVES)}")
    g.add_argument("--pair-workers", type=int, default=0,
                   help="processes that build pairs (0: one per CPU core)")
    g = parser.add_argument_group("loss")
    g.add_argument("--beta", type=float, default=MPOConfig.beta)


def run(args: argparse.Namespace) -> int:
    if not (Path(args.data) / "manifest.json").is_file():
        raise SystemExit(f"error: {str(args.data)!r} has no manifest.json; run `ivl-embodied train data` first")
    pair_cfg = PairConfig(samples=args.samples, temperature=args.temperature, top_k=args.top_k,
                          max_new_tokens=args.max_new_tokens, prompts=args.prompts or None, seed=args.seed,
                          negatives=tuple(n for n in args.negatives.split(",") if n))
    train_cfg, optim_cfg = configs_from_args(args)
    last = train_mpo(args.data, args.init, args.out, pair_cfg, MPOConfig(beta=args.beta), train_cfg, optim_cfg,
                     pairs_path=args.pairs, resume=args.resume, stop_after=args.stop_after,
                     progress=not args.no_progress, pair_workers=workers_from_flag("--pair-workers", args.pair_workers))
    print(json.dumps(last))
    return 0
