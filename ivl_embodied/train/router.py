"""Router training: teach ViR which tiles can take the 64-token path at (almost) no cost.

    ivl-embodied train router --init VICO_PLANNER --data DIR --out OUT [--steps N] [--tau 1.05]

1. Labels (InternVL3.5's ViCO stage 2). For every training image, the answer NLL (mean per answer
   token) is measured with all tiles at 256 tokens (``L256``) and, **per tile**, with only that tile
   compressed to 64 tokens and the others at 256 (``L64``): ``T + 1`` teacher-forced passes per
   image of ``T`` tiles. :func:`~.losses.router_labels` turns ``L64 / L256 < τ`` into "compress".
2. Training. Only ``vision_router`` learns (ViT, projectors and LLM are frozen, so each tile's
   router input, its last ViT hidden state, is computed once); loss :func:`~.losses.router_loss`,
   optionally class-balanced.
3. Report, on the held-back examples (never labelled for training): the router's accuracy against
   their own labels, the share of tiles it compresses at ``ViRPolicy("auto", relative, absolute)``
   (routing per image, as ``VisionEncoder.encode`` does), and the answer NLL of that routing vs all
   tiles at 256. Note: with ``relative`` = 0.5 the quantile is taken over an image's own tiles, so
   an image of one tile is never compressed (``p > quantile(p)`` is false); the report also gives
   the share with ``p_compress >= 0.5`` (the router's own argmax) for that reason.

The result is the ``--init`` planner with the trained router, in the planner layout (``OUT/vision``
+ ``OUT/language``), plus ``OUT/router_report.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ivl_embodied.language.planner import LanguagePlanner
from ivl_embodied.train.config import (
    OptimConfig,
    TrainConfig,
    add_run_arguments,
    configs_from_args,
    to_dict,
)
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.losses import DEFAULT_ROUTER_TAU, router_labels, router_loss
from ivl_embodied.train.vico import (
    answer_nll,
    check_data,
    load_vir_planner,
    tile_visuals,
)
from ivl_embodied.vision.encoder import VisionEncoder
from ivl_embodied.vision.vir import ViRPolicy, VisualResolutionRouter, route_tiles

logger = logging.getLogger(__name__)


# -- labels ----------------------------------------------------------------------------------
@torch.no_grad()
def tile_losses(encoder: VisionEncoder, planner: LanguagePlanner, pixel_values: torch.Tensor,
                instructions: Sequence[str], plans: Sequence[str],
                tiles_per_image: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of images -> ``(L64 [N], L256 [N], router inputs [N, P, C])``, ``N = B·T``.

    ``L256[n]`` = answer NLL of tile ``n``'s image with every tile at 256 tokens; ``L64[n]`` = the
    same with only tile ``n`` at 64 tokens.
    """
    device = next(encoder.parameters()).device
    grid = encoder.vit_features(pixel_values.to(device))  # [N, side, side, C]
    n, side, _, c = grid.shape
    full, comp = encoder.project_full(grid), encoder.project_compressed(grid)  # [N, T256, D], [N, T64, D]
    keep_all = torch.zeros(n, dtype=torch.bool)
    logits, labels = planner.forward_batch(tile_visuals(full, None, keep_all, tiles_per_image), instructions, plans)
    l256 = answer_nll(logits, labels).repeat_interleave(tiles_per_image)  # [B] -> [N]
    l64 = torch.empty(n, device=l256.device)
    for t in range(tiles_per_image):  # compress tile t of every image, the others stay at 256
        compress = keep_all.clone()
        compress[t::tiles_per_image] = True
        logits, labels = planner.forward_batch(tile_visuals(full, comp, compress, tiles_per_image), instructions,
                                               plans)
        l64[t::tiles_per_image] = answer_nll(logits, labels)  # [B]
    return l64.cpu(), l256.cpu(), grid.reshape(n, side * side, c).cpu()  # [N], [N], [N, P, C]


def label_examples(encoder: VisionEncoder, planner: LanguagePlanner, data: PlanDataset, indices: Sequence[int],
                   batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``tile_losses`` over ``indices`` in batches -> ``(L64 [N], L256 [N], router inputs [N, P, C])``."""
    parts = []
    for i in range(0, len(indices), batch_size):
        idx = list(indices[i : i + batch_size])
        parts.append(tile_losses(encoder, planner, data.pixel_values(idx), [data.examples[j].instruction for j in idx],
                                 [data.examples[j].plan for j in idx], data.tiles_per_image))
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


# -- the router module -----------------------------------------------------------------------
class RouterModel(nn.Module):
    """Only the router: ``forward({"patches" [N, P, C], "labels" [N]}) -> (loss, metrics)``."""

    def __init__(self, router: VisualResolutionRouter, class_balanced: bool = False):
        super().__init__()
        self.router, self.class_balanced = router, class_balanced

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        device = self.router.query.device
        logits = self.router.logits(batch["patches"].to(device))  # [N, 2]
        labels = batch["labels"].to(device)  # [N]
        loss = router_loss(logits, labels, from_logits=True, class_balanced=self.class_balanced)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"acc": float(acc), "label_compress_share": float(labels.float().mean())}


@torch.no_grad()
def router_accuracy(router: VisualResolutionRouter, patches: torch.Tensor, labels: torch.Tensor,
                    batch_size: int = 256) -> float:
    device = router.query.device
    hits = 0
    for i in range(0, patches.shape[0], batch_size):
        pred = router.logits(patches[i : i + batch_size].to(device)).argmax(-1).cpu()  # [n]
        hits += int((pred == labels[i : i + batch_size]).sum())
    return hits / max(patches.shape[0], 1)


@torch.no_grad()
def routing_report(encoder: VisionEncoder, planner: LanguagePlanner, data: PlanDataset, indices: Sequence[int],
                   policy: ViRPolicy, batch_size: int) -> dict:
    """Share of tiles compressed at ``policy`` (per image) and the answer NLL vs all-256, on ``indices``."""
    device = next(encoder.parameters()).device
    t = data.tiles_per_image
    routed, argmax, nll_routed, nll256, nll64, n_img = 0, 0, 0.0, 0.0, 0.0, 0
    for i in range(0, len(indices), batch_size):
        idx = list(indices[i : i + batch_size])
        ins, plans = [data.examples[j].instruction for j in idx], [data.examples[j].plan for j in idx]
        grid = encoder.vit_features(data.pixel_values(idx).to(device))  # [N, side, side, C]
        n, side, _, c = grid.shape
        p_compress = encoder.vision_router(grid.reshape(n, side * side, c))[:, 1].cpu()  # [N]
        compress = torch.cat([route_tiles(p_compress[b : b + t], policy) for b in range(0, n, t)])  # [N] per image
        full, comp = encoder.project_full(grid), encoder.project_compressed(grid)
        runs = {"routed": compress, "full": torch.zeros(n, dtype=torch.bool),
                "compressed": torch.ones(n, dtype=torch.bool)}
        nll = {k: answer_nll(*planner.forward_batch(tile_visuals(full, comp, v, t), ins, plans)).sum().item()
               for k, v in runs.items()}
        routed += int(compress.sum())
        argmax += int((p_compress >= 0.5).sum())
        nll_routed, nll256, nll64 = nll_routed + nll["routed"], nll256 + nll["full"], nll64 + nll["compressed"]
        n_img += len(idx)
    tiles, imgs = max(n_img * t, 1), max(n_img, 1)
    return {"tiles": n_img * t, "compressed_share": routed / tiles, "argmax_compress_share": argmax / tiles,
            "nll256": nll256 / imgs, "nll_routed": nll_routed / imgs, "nll64": nll64 / imgs,
            "nll_cost": nll_routed / imgs - nll256 / imgs,
            "policy": {"relative": policy.relative, "absolute": policy.absolute}}


def train_router(init: str | Path, data_dir: str | Path, out: str | Path, train_cfg: TrainConfig | None = None,
                 optim_cfg: OptimConfig | None = None, tau: float = DEFAULT_ROUTER_TAU, class_balanced: bool = False,
                 label_examples_max: int | None = None, policy: ViRPolicy | None = None,
                 resume: bool = False, stop_after: int | None = None, progress: bool = True) -> dict:
    """Label, train, save, report; returns the report (or the last row when stopped early)."""
    from ivl_embodied.train.sft import save_planner
    from ivl_embodied.train.trainer import Trainer, make_accelerator

    train_cfg = train_cfg or TrainConfig(steps=500, eval_examples=0)
    optim_cfg = optim_cfg or OptimConfig(warmup_steps=20)
    policy = policy or ViRPolicy("auto")
    out = Path(out)
    data = PlanDataset(data_dir)
    encoder, planner, meta = load_vir_planner(init, seed=train_cfg.seed)
    check_data(data, encoder, train_cfg.holdout)
    acc = make_accelerator(train_cfg)
    encoder.to(acc.device).eval()
    planner.to(acc.device).eval()
    n_train = len(data) - train_cfg.holdout
    train_idx = list(range(n_train))[:label_examples_max]
    holdout = list(range(n_train, len(data)))
    # every rank labels the same tiles (deterministic, no sampling): no gather needed
    l64, l256, patches = label_examples(encoder, planner, data, train_idx, train_cfg.batch_size)
    labels = router_labels(l64, l256, tau).labels  # [N]
    held = label_examples(encoder, planner, data, holdout, train_cfg.batch_size) if holdout else None
    held_labels = router_labels(held[0], held[1], tau).labels if held is not None else None
    share = float(labels.float().mean())
    logger.info("router labels: %d training tiles, %.1f %% compress at tau %.3f", len(labels), 100 * share, tau)
    if share in (0.0, 1.0):
        logger.warning("all router labels are %d: the router can only learn a constant", int(share))
    out.mkdir(parents=True, exist_ok=True)
    if acc.is_main_process:
        (out / "config.json").write_text(json.dumps(
            {"init": str(init), "data": str(data_dir), "data_content_hash": data.manifest["content_hash"],
             "train": to_dict(train_cfg), "optim": to_dict(optim_cfg), "tau": tau, "class_balanced": class_balanced,
             "label_examples": len(train_idx)}, indent=2))
        torch.save({"loss_64": l64, "loss_256": l256, "labels": labels}, out / "router_labels.pt")

    model = RouterModel(copy.deepcopy(encoder.vision_router).train().requires_grad_(True), class_balanced)

    def batch_fn(indices) -> dict:
        return {"patches": patches[torch.as_tensor(indices)], "labels": labels[torch.as_tensor(indices)]}

    def eval_fn(m: RouterModel) -> dict:
        return {"acc": router_accuracy(m.router, held[2], held_labels)}

    def save_fn(m: RouterModel, o: Path) -> None:
        encoder.vision_router.load_state_dict(m.router.state_dict())
        extra = {k: v for k, v in meta.items() if k not in ("max_tiles", "tile_size")}
        extra.update({"router_trained_by": "ivl-embodied train router", "router_steps": train_cfg.steps,
                      "router_tau": tau, "router_init": str(init)})
        save_planner(SimpleNamespace(encoder=encoder, planner=planner, tiles_per_image=data.tiles_per_image), o, extra)

    trainer = Trainer(model, len(labels), batch_fn, out, train_cfg, optim_cfg, accelerator=acc, progress=progress,
                      stage="router", eval_fn=eval_fn if held is not None else None, save_fn=save_fn)
    last = trainer.fit(resume=resume, stop_after=stop_after)
    if trainer.step < train_cfg.steps:
        return last
    encoder.vision_router.load_state_dict(trainer.plain_model().router.state_dict())
    report = {"train_tiles": len(labels), "train_label_compress_share": share, "tau": tau,
              "train_acc": router_accuracy(encoder.vision_router, patches, labels)}
    if held is not None:
        report.update({"holdout_label_compress_share": float(held_labels.float().mean()),
                       "holdout_acc": router_accuracy(encoder.vision_router, held[2], held_labels),
                       **routing_report(encoder, planner, data, holdout, policy, train_cfg.batch_size)})
    if acc.is_main_process:
        (out / "router_report.json").write_text(json.dumps(report, indent=2))
    logger.info("router report: %s", report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, TrainConfig(steps=500, eval_examples=0), OptimConfig(lr=1e-3),
                      init_help="planner directory (vision/ + language/) to start from")
    g = parser.add_argument_group("router")
    g.add_argument("--tau", type=float, default=DEFAULT_ROUTER_TAU, help="compress when L64 / L256 < tau")
    g.add_argument("--class-balanced", action="store_true", help="mean of per-class losses")
    g.add_argument("--label-examples", type=int, default=4000,
                   help="label at most this many training images (0: all)")
    p = ViRPolicy()
    g.add_argument("--relative", type=float, default=p.relative, help="report: ViRPolicy relative quantile")
    g.add_argument("--absolute", type=float, default=p.absolute, help="report: ViRPolicy absolute threshold")


def run(args: argparse.Namespace) -> int:
    if args.label_examples < 0:
        raise SystemExit(f"error: --label-examples must be >= 0, got {args.label_examples}")
    train_cfg, optim_cfg = configs_from_args(args)
    result = train_router(args.init, args.data, args.out, train_cfg, optim_cfg, tau=args.tau,
                          class_balanced=args.class_balanced, label_examples_max=args.label_examples or None,
                          policy=ViRPolicy("auto", args.relative, args.absolute), resume=args.resume,
                          stop_after=args.stop_after, progress=not args.no_progress)
    print(json.dumps(result))
    return 0
