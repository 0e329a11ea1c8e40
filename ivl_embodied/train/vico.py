"""ViCO consistency training: teach ``mlp2`` (the 64-token path) to answer like the 256-token path.

    ivl-embodied train vico --init PLANNER --data DIR --out OUT [--steps N] [--resume]

Per batch (InternVL3.5's ViCO stage 1):

* reference ``π_ref``: the model with every tile at 256 tokens (pixel shuffle 0.5 + ``mlp1``),
  run without gradients;
* policy ``π_θ``: the same images where each tile independently goes to the 64-token path
  (pixel shuffle 0.25 + ``mlp2``) with probability ``compress_prob``, else to the 256-token path;
* loss = ``KL(π_ref ‖ π_θ)`` per answer token (:func:`~.losses.vico_consistency_loss`, answer
  tokens aligned with :func:`~.losses.answer_logits` since the prompts differ in length)
  ``+ nll_weight ·`` the plain answer NLL with every tile at 64 tokens (off by default).

What trains: ``mlp2`` always; the LLM with ``--train-llm`` (then the reference is a frozen copy of
the initial LLM, as in the paper, so the target does not drift). The ViT and ``mlp1`` stay frozen:
they define the 256-token reference. The router is not used here (``train router`` comes next).

If ``--init`` has no ViR parts (a plain SFT/MPO/GSPO planner), ``mlp2`` and ``vision_router`` are
added with a fresh, seeded init; the result is always a Flash/ViR checkpoint in the planner layout
(``OUT/vision`` + ``OUT/language``) that ``load_vision`` reads with ``with_vir=True``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ivl_embodied.checkpoints.internvl import load_language, load_vision
from ivl_embodied.language.planner import LanguagePlanner
from ivl_embodied.train.config import (
    OptimConfig,
    TrainConfig,
    add_run_arguments,
    configs_from_args,
    to_dict,
)
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.losses import answer_logits, vico_consistency_loss
from ivl_embodied.vision.encoder import VisionEncoder

logger = logging.getLogger(__name__)


# -- shared with router.py ---------------------------------------------------------------------
def load_vir_planner(init: str | Path, seed: int = 0) -> tuple[VisionEncoder, LanguagePlanner, dict]:
    """Planner directory -> (ViR vision encoder, language planner, ``ivl_planner.json`` meta).

    A vision side without ``mlp2``/``vision_router`` gets them freshly initialised (seeded);
    every other weight is copied and checked to match.
    """
    init = Path(init)
    if not (init / "vision").is_dir() or not (init / "language").is_dir():
        raise FileNotFoundError(f"{str(init)!r} is not a planner directory (needs vision/ and language/)")
    encoder = load_vision(init / "vision")
    planner = load_language(init / "language")
    meta_path = init / "vision" / "ivl_planner.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if not encoder.config.with_vir:
        torch.manual_seed(seed)
        vir = VisionEncoder(dataclasses.replace(encoder.config, with_vir=True))
        missing, unexpected = vir.load_state_dict(encoder.state_dict(), strict=False)
        fresh = [k for k in missing if not k.startswith(("mlp2.", "vision_router."))]
        if fresh or unexpected:
            raise ValueError(f"vision weights of {init} do not fit a ViR encoder: missing {fresh[:5]}, "
                             f"unexpected {unexpected[:5]}")
        logger.info("%s has no ViR parts: added a fresh mlp2 + vision_router (%d tensors)", init, len(missing))
        encoder = vir.eval()
    return encoder, planner, meta


def tile_visuals(full: torch.Tensor, compressed: torch.Tensor | None, compress: torch.Tensor,
                 tiles_per_image: int) -> list[torch.Tensor]:
    """Per-tile blocks -> one ``[tokens, D]`` tensor per image, tile order kept.

    ``full [N, T256, D]``, ``compressed [N, T64, D]`` (may be None when nothing is compressed),
    ``compress [N]`` bool; ``N = B * tiles_per_image``.
    """
    if full.shape[0] % tiles_per_image or compress.shape != full.shape[:1]:
        raise ValueError(f"{full.shape[0]} tiles / compress {tuple(compress.shape)} do not split into images of "
                         f"{tiles_per_image} tiles")
    blocks = [compressed[i] if bool(compress[i]) else full[i] for i in range(full.shape[0])]  # N x [T_i, D]
    return [torch.cat(blocks[b : b + tiles_per_image]) for b in range(0, len(blocks), tiles_per_image)]


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B, L, V]`` logits, ``[B, L]`` labels (-100 off the answer) -> ``[B]`` mean NLL per answer token."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, L-1, V] predicts token t+1
    target = labels[:, 1:]  # [B, L-1]
    mask = target != -100  # [B, L-1]
    tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, L-1]
    nll = torch.where(mask, -tok, torch.zeros_like(tok))  # [B, L-1]
    return nll.sum(-1) / mask.sum(-1).clamp(min=1)  # [B]


def check_data(data: PlanDataset, encoder: VisionEncoder, holdout: int) -> None:
    if data.tile_size != encoder.config.tile_size:
        raise ValueError(f"data has {data.tile_size}-px tiles but the planner takes "
                         f"{encoder.config.tile_size}-px tiles")
    if len(data) <= holdout:
        raise ValueError(f"{len(data)} examples leave nothing to train on after holding back {holdout}")


# -- the ViCO module ---------------------------------------------------------------------------
class ViCOModel(nn.Module):
    """ViR encoder + planner: ``forward(batch) -> (loss, metrics)`` for :class:`~.trainer.Trainer`.

    Exposes ``encoder``, ``planner``, ``tiles_per_image`` as :class:`~.sft.SFTModel` does, so
    :func:`~.sft.save_planner` writes it.
    """

    def __init__(self, encoder: VisionEncoder, planner: LanguagePlanner, tiles_per_image: int = 1,
                 compress_prob: float = 0.5, nll_weight: float = 0.0, train_llm: bool = False):
        super().__init__()
        if not encoder.config.with_vir:
            raise ValueError("ViCO needs a ViR encoder (mlp2 + vision_router); see load_vir_planner")
        if not 0.0 < compress_prob <= 1.0:
            raise ValueError(f"compress_prob must be in (0, 1], got {compress_prob!r}")
        if not nll_weight >= 0.0:
            raise ValueError(f"nll_weight must be >= 0, got {nll_weight!r}")
        self.encoder, self.planner, self.tiles_per_image = encoder, planner, tiles_per_image
        self.compress_prob, self.nll_weight, self.train_llm = compress_prob, nll_weight, train_llm
        for p in encoder.parameters():  # ViT, mlp1 and router frozen: they are not part of this stage
            p.requires_grad_(False)
        for p in encoder.mlp2.parameters():
            p.requires_grad_(True)
        for p in planner.parameters():
            p.requires_grad_(train_llm)
        # with a trainable LLM the target must not move: keep a frozen copy of the initial one
        self.ref_planner = copy.deepcopy(planner).requires_grad_(False).eval() if train_llm else None

    def _reference(self) -> LanguagePlanner:
        return self.ref_planner if self.ref_planner is not None else self.planner

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        device = next(self.encoder.parameters()).device
        instructions, plans = batch["instructions"], batch["plans"]
        with torch.no_grad():  # frozen ViT + mlp1: the 256-token blocks are shared by both runs
            grid = self.encoder.vit_features(batch["pixel_values"].to(device))  # [N, side, side, C]
            full = self.encoder.project_full(grid)  # [N, T256, D]
            ref_logits, ref_labels = self._reference().forward_batch(
                tile_visuals(full, None, torch.zeros(full.shape[0], dtype=torch.bool), self.tiles_per_image),
                instructions, plans)  # [B, L256, V]
        compress = torch.rand(full.shape[0]) < self.compress_prob  # [N] each tile on its own
        compressed = self.encoder.project_compressed(grid)  # [N, T64, D] differentiable into mlp2
        pol_logits, pol_labels = self.planner.forward_batch(
            tile_visuals(full, compressed, compress, self.tiles_per_image), instructions, plans)  # [B, Lmix, V]
        ref_ans, ref_mask = answer_logits(ref_logits, ref_labels)  # [B, A, V]
        pol_ans, pol_mask = answer_logits(pol_logits, pol_labels)  # [B, A, V]
        if not torch.equal(ref_mask, pol_mask):
            raise AssertionError("answer tokens of the 256-token and the mixed run do not line up")
        kl = vico_consistency_loss(pol_ans, ref_ans, pol_mask)
        # keeps mlp2 in the graph even when no tile of the batch was compressed (DDP needs every
        # trainable parameter to get a gradient, and backward needs a graph)
        loss = kl + 0.0 * sum(p.sum() for p in self.encoder.mlp2.parameters())
        metrics = {"kl": float(kl.detach()), "compressed_share": float(compress.float().mean())}
        if self.nll_weight > 0:
            all64 = torch.ones(full.shape[0], dtype=torch.bool)
            logits64, labels64 = self.planner.forward_batch(
                tile_visuals(full, compressed, all64, self.tiles_per_image), instructions, plans)
            nll64 = answer_nll(logits64, labels64).mean()
            loss = loss + self.nll_weight * nll64
            metrics["nll64"] = float(nll64.detach())
        return loss, metrics


@torch.no_grad()
def consistency_report(model: ViCOModel, data: PlanDataset, indices: Sequence[int], batch_size: int) -> dict:
    """On ``indices``: KL(all-256 ‖ all-64) per answer token, and the answer NLL of both paths."""
    kl_sum, nll256, nll64, count = 0.0, 0.0, 0.0, 0
    planner, ref = model.planner, model._reference()
    device = next(model.encoder.parameters()).device
    for i in range(0, len(indices), batch_size):
        idx = list(indices[i : i + batch_size])
        ins, plans = [data.examples[j].instruction for j in idx], [data.examples[j].plan for j in idx]
        grid = model.encoder.vit_features(data.pixel_values(idx).to(device))  # [N, side, side, C]
        full, comp = model.encoder.project_full(grid), model.encoder.project_compressed(grid)
        none = torch.zeros(full.shape[0], dtype=torch.bool)
        ref_logits, ref_labels = ref.forward_batch(tile_visuals(full, None, none, model.tiles_per_image), ins, plans)
        logits, labels = planner.forward_batch(tile_visuals(full, comp, ~none, model.tiles_per_image), ins, plans)
        r_ans, mask = answer_logits(ref_logits, ref_labels)
        p_ans, _ = answer_logits(logits, labels)
        kl_sum += float(vico_consistency_loss(p_ans, r_ans, mask)) * len(idx)
        nll256 += float(answer_nll(ref_logits, ref_labels).sum())
        nll64 += float(answer_nll(logits, labels).sum())
        count += len(idx)
    n = max(count, 1)
    return {"kl_all64": kl_sum / n, "nll256": nll256 / n, "nll64": nll64 / n}


def train_vico(init: str | Path, data_dir: str | Path, out: str | Path, train_cfg: TrainConfig | None = None,
               optim_cfg: OptimConfig | None = None, compress_prob: float = 0.5, nll_weight: float = 0.0,
               train_llm: bool = False, resume: bool = False, stop_after: int | None = None,
               progress: bool = True) -> dict:
    """Run ViCO; returns the last logged row. The final planner lands in ``out`` (ViR layout)."""
    from ivl_embodied.train.sft import save_planner
    from ivl_embodied.train.trainer import Trainer, make_accelerator

    train_cfg = train_cfg or TrainConfig(steps=2000, eval_examples=0)
    optim_cfg = optim_cfg or OptimConfig()
    out = Path(out)
    data = PlanDataset(data_dir)
    encoder, planner, meta = load_vir_planner(init, seed=train_cfg.seed)
    check_data(data, encoder, train_cfg.holdout)
    acc = make_accelerator(train_cfg)
    model = ViCOModel(encoder, planner, data.tiles_per_image, compress_prob, nll_weight, train_llm)
    n_train = len(data) - train_cfg.holdout
    holdout = list(range(n_train, len(data)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("ViCO: %.3f M trainable parameters, %d train / %d held-back examples", trainable / 1e6, n_train,
                len(holdout))
    out.mkdir(parents=True, exist_ok=True)
    if acc.is_main_process:
        (out / "config.json").write_text(json.dumps(
            {"init": str(init), "data": str(data_dir), "data_content_hash": data.manifest["content_hash"],
             "train": to_dict(train_cfg), "optim": to_dict(optim_cfg), "compress_prob": compress_prob,
             "nll_weight": nll_weight, "train_llm": train_llm}, indent=2))

    def batch_fn(indices) -> dict:
        return {"pixel_values": data.pixel_values(indices),
                "instructions": [data.examples[i].instruction for i in indices],
                "plans": [data.examples[i].plan for i in indices]}

    def eval_fn(m: ViCOModel) -> dict:
        return consistency_report(m, data, holdout, train_cfg.batch_size)

    extra = {k: v for k, v in meta.items() if k not in ("max_tiles", "tile_size")}
    extra.update({"trained_by": "ivl-embodied train vico", "vico_steps": train_cfg.steps, "vico_init": str(init),
                  "data_content_hash": data.manifest["content_hash"]})
    trainer = Trainer(model, n_train, batch_fn, out, train_cfg, optim_cfg, accelerator=acc, progress=progress,
                      stage="vico", eval_fn=eval_fn if holdout else None,
                      save_fn=lambda m, o: save_planner(m, o, extra))
    return trainer.fit(resume=resume, stop_after=stop_after)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, TrainConfig(steps=600, eval_interval=200, checkpoint_interval=200, eval_examples=0),
                      OptimConfig(lr=1e-3),
                      init_help="planner directory (vision/ + language/) to start from")
    g = parser.add_argument_group("ViCO")
    g.add_argument("--compress-prob", type=float, default=0.5, help="chance that a tile takes the 64-token path")
    g.add_argument("--nll-weight", type=float, default=0.0, help="weight of the answer NLL with all tiles at 64")
    g.add_argument("--train-llm", action="store_true", help="also train the LLM (reference = frozen initial copy)")


def run(args: argparse.Namespace) -> int:
    train_cfg, optim_cfg = configs_from_args(args)
    last = train_vico(args.init, args.data, args.out, train_cfg, optim_cfg, compress_prob=args.compress_prob,
                      nll_weight=args.nll_weight, train_llm=args.train_llm, resume=args.resume,
                      stop_after=args.stop_after, progress=not args.no_progress)
    print(json.dumps(last))
    return 0
