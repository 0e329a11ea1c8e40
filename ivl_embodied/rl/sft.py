"""SFT: supervised fine-tuning of the whole planner (ViT + projector + LLM) on oracle plans.

    ivl-embodied train sft --data DIR --out OUT [--steps N] [--resume]

The loss is next-token cross-entropy on the plan tokens (+ ``<|im_end|>``) only; prompt and
image positions carry label -100 (:meth:`LanguagePlanner.forward_batch`). The last
``holdout`` examples of the data are never trained on: the eval hook scores them
(teacher-forced loss; greedy decoding -> parse rate, exact match, box IoU, boxes with IoU > 0.5).
The result is written in the default-planner layout (``OUT/vision`` + ``OUT/language`` +
``OUT/vision/ivl_planner.json``), so ``ivl-embodied sim-eval --planner OUT`` runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..model.checkpoints import save_language, save_vision
from ..model.planner import GenerationSettings, LanguagePlanner, PlannerConfig
from ..model.vision import VisionEncoder, VisionEncoderConfig
from .config import (
    ModelConfig,
    OptimConfig,
    TrainConfig,
    add_run_arguments,
    configs_from_args,
    to_dict,
)
from .data import PlanDataset
from .tokenizer import train_planner_tokenizer

logger = logging.getLogger(__name__)

ENCODER_ID = "ivl_default_planner"


def build_planner_modules(cfg: ModelConfig, tokenizer) -> tuple[VisionEncoder, LanguagePlanner]:
    """A fresh (random) InternVL3.5-shaped ViT + mlp1 and Qwen3 LM for ``cfg``."""
    from transformers import InternVLVisionConfig, Qwen3Config, Qwen3ForCausalLM

    vision = InternVLVisionConfig(
        hidden_size=cfg.vision_hidden, num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
        intermediate_size=4 * cfg.vision_hidden, image_size=cfg.tile_size, patch_size=cfg.patch_size)
    encoder = VisionEncoder(VisionEncoderConfig(vision, cfg.text_hidden, encoder_id=ENCODER_ID))
    text = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=3 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads, num_key_value_heads=cfg.text_kv_heads,
        head_dim=cfg.text_hidden // cfg.text_heads, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    planner = LanguagePlanner(Qwen3ForCausalLM(text), tokenizer, PlannerConfig(system_prompt=cfg.system_prompt))
    return encoder, planner


def plan_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token CE over labelled positions, and the token accuracy there."""
    pred = logits[:, :-1].float()  # [B, L-1, V] predicts token t+1
    target = labels[:, 1:]  # [B, L-1]
    loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100)
    mask = target != -100
    acc = ((pred.argmax(-1) == target) & mask).sum() / mask.sum().clamp(min=1)
    return loss, acc


class SFTModel(nn.Module):
    """Vision encoder + language planner as one module: ``forward(batch) -> (loss, metrics)``."""

    def __init__(self, encoder: VisionEncoder, planner: LanguagePlanner, tiles_per_image: int = 1):
        super().__init__()
        self.encoder, self.planner, self.tiles_per_image = encoder, planner, tiles_per_image

    def visuals(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """[B*T, 3, s, s] -> B tensors [T*tokens, D] (one image's tokens, tile order kept)."""
        device = next(self.encoder.parameters()).device
        emb, tokens = self.encoder(pixel_values.to(device))  # [B*T*tokens, D]
        per_image = sum(tokens[: self.tiles_per_image])
        return list(emb.split(per_image))

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        logits, labels = self.planner.forward_batch(self.visuals(batch["pixel_values"]), batch["instructions"],
                                                    batch["plans"])
        loss, acc = plan_token_loss(logits, labels)
        return loss, {"token_acc": float(acc)}


def box_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def plan_metrics(predicted: str, reference: str) -> dict:
    """Exact match, and IoU of each reference box with the predicted box in the same place."""
    from ..plan.schema import PlanParseError, parse_plan

    ref = parse_plan(reference)
    try:
        pred = parse_plan(predicted)
    except PlanParseError:
        return {"parsed": 0.0, "exact": 0.0, "ious": [0.0] * sum(
            (s.box is not None) + (s.target_box is not None) for s in ref.steps), "structure": 0.0}
    ious, same = [], len(pred.steps) == len(ref.steps)
    for i, r in enumerate(ref.steps):
        p = pred.steps[i] if i < len(pred.steps) else None
        same = same and p is not None and (p.action, p.object, p.target) == (r.action, r.object, r.target)
        for field in ("box", "target_box"):
            rb = getattr(r, field)
            if rb is not None:
                pb = getattr(p, field) if p is not None else None
                ious.append(box_iou(pb, rb) if pb is not None else 0.0)
    return {"parsed": 1.0, "exact": float(predicted == reference), "ious": ious, "structure": float(same)}


def make_eval_fn(data: PlanDataset, holdout: list[int], eval_examples: int, batch_size: int):
    """Teacher-forced loss on the held-back slice + greedy decoding of its first ``eval_examples``."""

    def evaluate(model: SFTModel) -> dict:
        losses = []
        for i in range(0, len(holdout), batch_size):
            idx = holdout[i : i + batch_size]
            logits, labels = model.planner.forward_batch(
                model.visuals(data.pixel_values(idx)), [data.examples[j].instruction for j in idx],
                [data.examples[j].plan for j in idx])
            losses.append(float(plan_token_loss(logits, labels)[0]) * len(idx))
        out = {"loss": sum(losses) / max(len(holdout), 1)}
        if eval_examples:
            agg = {"parsed": 0.0, "exact": 0.0, "structure": 0.0}
            ious: list[float] = []
            # unconstrained greedy decoding: the parse rate then measures the model, not the decoder
            settings = GenerationSettings(max_new_tokens=160, constrained=False)
            for j in holdout[:eval_examples]:
                vis = model.visuals(data.pixel_values([j]))[0]
                text = model.planner.generate(vis, data.examples[j].instruction, settings).text
                m = plan_metrics(text, data.examples[j].plan)
                ious.extend(m.pop("ious"))
                for k in agg:
                    agg[k] += m[k] / eval_examples
            out.update(agg)
            out["box_iou"] = sum(ious) / max(len(ious), 1)
            out["box_acc50"] = sum(v > 0.5 for v in ious) / max(len(ious), 1)
        return out

    return evaluate


def save_planner(model: SFTModel, out: Path, extra: dict | None = None) -> None:
    """Default-planner layout: ``out/vision`` + ``out/language`` + ``vision/ivl_planner.json``."""
    save_vision(model.encoder, out / "vision")
    save_language(model.planner, out / "language")
    meta = {"max_tiles": model.tiles_per_image, "tile_size": model.encoder.config.tile_size, **(extra or {})}
    (out / "vision" / "ivl_planner.json").write_text(json.dumps(meta, indent=2))
    logger.info("saved planner to %s (vision/ + language/)", out)


def load_or_train_tokenizer(out: Path, data: PlanDataset, vocab_size: int, is_main: bool):
    """The run's tokenizer: trained once on the data's corpus, then read back from ``out/tokenizer``."""
    from transformers import AutoTokenizer

    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    tok = train_planner_tokenizer(data.corpus(), vocab_size)  # deterministic: every rank gets the same
    if is_main:
        tok.save_pretrained(str(tok_dir))
    return tok


def train_sft(data_dir: str | Path, out: str | Path, model_cfg: ModelConfig | None = None,
              train_cfg: TrainConfig | None = None, optim_cfg: OptimConfig | None = None,
              resume: bool = False, stop_after: int | None = None, progress: bool = True) -> dict:
    """Run SFT; returns the last logged row. Deterministic in ``train_cfg.seed``."""
    from .trainer import Trainer, make_accelerator

    model_cfg, train_cfg, optim_cfg = model_cfg or ModelConfig(), train_cfg or TrainConfig(), optim_cfg or OptimConfig()

    out = Path(out)
    data = PlanDataset(data_dir)
    if (data.tile_size, data.max_tiles) != (model_cfg.tile_size, model_cfg.max_tiles):
        raise ValueError(f"data has {data.tile_size}-px tiles, max_tiles {data.max_tiles} but the model wants "
                         f"{model_cfg.tile_size} / {model_cfg.max_tiles}: re-render the data or change the model")
    if len(data) <= train_cfg.holdout:
        raise ValueError(f"{len(data)} examples leave nothing to train on after holding back {train_cfg.holdout}")
    acc = make_accelerator(train_cfg)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_or_train_tokenizer(out, data, model_cfg.vocab_size, acc.is_main_process)
    torch.manual_seed(train_cfg.seed)
    model = SFTModel(*build_planner_modules(model_cfg, tok), tiles_per_image=data.tiles_per_image)
    n_train = len(data) - train_cfg.holdout
    holdout = list(range(n_train, len(data)))
    params = sum(p.numel() for p in model.parameters())
    logger.info("SFT: %.2f M parameters, %d train / %d held-back examples", params / 1e6, n_train, len(holdout))
    if acc.is_main_process:
        (out / "config.json").write_text(json.dumps(
            {"model": to_dict(model_cfg), "train": to_dict(train_cfg), "optim": to_dict(optim_cfg),
             "data": str(data_dir), "data_content_hash": data.manifest["content_hash"]}, indent=2))

    def batch_fn(indices) -> dict:
        return {"pixel_values": data.pixel_values(indices),
                "instructions": [data.examples[i].instruction for i in indices],
                "plans": [data.examples[i].plan for i in indices]}

    trainer = Trainer(
        model, n_train, batch_fn, out, train_cfg, optim_cfg, accelerator=acc, progress=progress, stage="sft",
        eval_fn=make_eval_fn(data, holdout, train_cfg.eval_examples, train_cfg.batch_size) if holdout else None,
        save_fn=lambda m, o: save_planner(m, o, {"trained_by": "ivl-embodied train sft", "steps": train_cfg.steps,
                                                 "data_content_hash": data.manifest["content_hash"]}))
    return trainer.fit(resume=resume, stop_after=stop_after)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    m, t, o = ModelConfig(), TrainConfig(), OptimConfig()
    add_run_arguments(parser, t, o)
    g = parser.add_argument_group("model (tile size and max tiles come from the data)")
    for name in ("vision_hidden", "vision_layers", "text_hidden", "text_layers", "vocab_size"):
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(m, name))


def run(args: argparse.Namespace) -> int:
    manifest = Path(args.data) / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"error: {str(args.data)!r} has no manifest.json; run `ivl-embodied train data` first")
    dcfg = json.loads(manifest.read_text())["config"]
    model_cfg = ModelConfig(tile_size=dcfg["tile_size"], max_tiles=dcfg["max_tiles"], vision_hidden=args.vision_hidden,
                            vision_layers=args.vision_layers, text_hidden=args.text_hidden,
                            text_layers=args.text_layers, vocab_size=args.vocab_size)
    train_cfg, optim_cfg = configs_from_args(args)
    last = train_sft(args.data, args.out, model_cfg, train_cfg, optim_cfg, resume=args.resume,
                     stop_after=args.stop_after, progress=not args.no_progress)
    print(json.dumps(last))
    return 0
