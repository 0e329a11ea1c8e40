"""SFT: supervised fine-tuning of the whole planner (ViT + projector + LLM) on oracle plans.

    ivl-embodied train sft --data DIR --out OUT [--steps N] [--resume]

The loss is next-token cross-entropy on the plan tokens (+ ``<|im_end|>``) only; prompt and
image positions carry label -100 (:meth:`LanguagePlanner.forward_batch`). Two training-only
terms make a from-scratch planner learn *where* things are within a CPU budget (measured: with
the plan loss alone, boxes stayed at chance after 2000 steps while the token loss plateaued):

* ``aux_weight x`` :class:`GroundingHead`: a linear readout of every visual token must give the
  colour, kind and box of the objects in its 2x2 patch cells (targets from the data's object list);
* ``attn_weight x`` :class:`BoxAttentionSupervision`: one attention head of the middle LM layer
  must look at the named object's visual token while each box digit is predicted.

Instructions are reworded on the fly (:func:`~ivl_embodied.train.augment.paraphrase`) so held-out
phrasings can be followed. None of this changes the saved planner's architecture. The last
``holdout`` examples of the data are never trained on: the eval hook scores them
(teacher-forced loss; greedy decoding -> parse rate, exact match, box IoU, boxes with IoU > 0.5,
boxes whose centre lies inside the reference box, boxes whose centre lies on another object).
The result is written in the default-planner layout (``OUT/vision`` + ``OUT/language`` +
``OUT/vision/ivl_planner.json``), so ``ivl-embodied sim-eval --planner OUT`` runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ivl_embodied.checkpoints.internvl import save_language, save_vision
from ivl_embodied.language.planner import GenerationSettings, LanguagePlanner, PlannerConfig
from ivl_embodied.train.augment import (
    COLOR_CLASSES,
    IGNORE,
    KIND_CLASSES,
    mirror_boxes,
    paraphrase,
    retarget,
    token_targets,
)
from ivl_embodied.train.config import (
    ModelConfig,
    OptimConfig,
    TrainConfig,
    add_run_arguments,
    configs_from_args,
    to_dict,
)
from ivl_embodied.train.data import PlanDataset
from ivl_embodied.train.tokenizer import train_planner_tokenizer
from ivl_embodied.vision.encoder import VisionEncoder, VisionEncoderConfig

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


def plan_token_loss(logits: torch.Tensor, labels: torch.Tensor,
                    weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token CE over labelled positions, and the token accuracy there.

    ``weights`` [B, L] (optional, same layout as ``labels``): the CE of predicting ``labels[b, t]``
    counts ``weights[b, t]`` times, and the mean is taken over the weights (all ones = the plain mean)."""
    pred = logits[:, :-1].float()  # [B, L-1, V] predicts token t+1
    target = labels[:, 1:]  # [B, L-1]
    mask = target != -100
    if weights is None:
        loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100)
    else:
        ce = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100,
                             reduction="none").reshape(target.shape)  # [B, L-1]
        w = weights[:, 1:].to(ce.dtype) * mask
        loss = (ce * w).sum() / w.sum().clamp(min=1e-12)
    acc = ((pred.argmax(-1) == target) & mask).sum() / mask.sum().clamp(min=1)
    return loss, acc


class GroundingHead(nn.Module):
    """Training-only linear readout of the visual tokens. Each token stands for a 2x2 block of ViT
    patches (pixel shuffle); for each of those 4 patch cells it predicts the colour, kind and box of
    the object whose box centre lies there (:func:`~ivl_embodied.train.augment.token_targets` on the
    patch grid), so the tokens must keep sub-token position, as the plan's boxes need."""

    SUB = 4  # patch cells per token (pixel shuffle 0.5)

    def __init__(self, dim: int):
        super().__init__()
        self.color = nn.Linear(dim, self.SUB * len(COLOR_CLASSES))
        self.kind = nn.Linear(dim, self.SUB * len(KIND_CLASSES))
        self.box = nn.Linear(dim, self.SUB * 4)

    @staticmethod
    def per_token(target: torch.Tensor, side: int) -> torch.Tensor:
        """[B, side*side, ...] patch-grid targets -> [B, (side/2)^2, 4, ...] grouped by token."""
        b, rest = target.shape[0], target.shape[2:]
        t = target.reshape(b, side // 2, 2, side // 2, 2, *rest).transpose(2, 3)
        return t.reshape(b, (side // 2) ** 2, 4, *rest)

    def loss(self, tokens: torch.Tensor, targets: dict) -> tuple[torch.Tensor, dict]:
        """``tokens`` [B, T, D]; ``targets`` from :func:`token_targets` on the 2*sqrt(T) patch grid."""
        tokens = tokens.float()
        b, t, _ = tokens.shape
        side = 2 * int(round(t**0.5))
        tg = {k: self.per_token(v, side) for k, v in targets.items()}  # [B, T, 4, ...]
        lc = F.cross_entropy(self.color(tokens).reshape(b * t * 4, -1), tg["color"].reshape(-1),
                             ignore_index=IGNORE)
        lk = F.cross_entropy(self.kind(tokens).reshape(b * t * 4, -1), tg["kind"].reshape(-1),
                             ignore_index=IGNORE)
        has = tg["has_box"]
        pred_box = self.box(tokens).reshape(b, t, 4, 4)
        lb = F.l1_loss(pred_box[has], tg["box"][has]) if has.any() else pred_box.sum() * 0.0
        return lc + lk + 5.0 * lb, {"aux_color": float(lc.detach()), "aux_kind": float(lk.detach()),
                                     "aux_box_l1": float(lb.detach())}


BOX_PATTERN = re.compile(r'"(?:box|target_box)":\[(\d+),(\d+),(\d+),(\d+)\]')


def box_digit_tokens(tokenizer, plan: str) -> list[tuple[int, float, float, bool]]:
    """The box-coordinate digit tokens of ``plan``, as (index among the plan's tokens, centre x,
    centre y of their box in its own 0..1000 frame, whether it is the box's first digit)."""
    offsets = tokenizer(plan, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    out = []
    for m in BOX_PATTERN.finditer(plan):
        x1, y1, x2, y2 = (int(v) for v in m.groups())
        first = True
        for t, (a, b) in enumerate(offsets):
            if a >= m.start(1) and b <= m.end(4) and plan[a:b].isdigit():
                out.append((t, (x1 + x2) / 2, (y1 + y2) / 2, first))
                first = False
    return out


def box_attention_pairs(tokenizer, prompt_ids: Sequence[int], image_token_id: int, plan: str,
                        box_max: int = 1000) -> list[tuple[int, int, bool]]:
    """Where the box digits of ``plan`` should look: (query position, key position, whether the
    query predicts its box's first digit) per box digit, in the sequence ``prompt_ids + plan
    tokens``. The query is the position that predicts a box digit (the token before it); the key
    is the visual token whose cell holds the box centre, on the single tile's square token grid.
    The first digit is the one that decides *which* object the box is about (the later digits
    can follow the ones already written)."""
    img_pos = [i for i, t in enumerate(prompt_ids) if t == image_token_id]
    grid = int(round(len(img_pos) ** 0.5))
    if grid * grid != len(img_pos) or not img_pos:
        raise ValueError(f"box attention needs one square tile of visual tokens, got {len(img_pos)} tokens")
    pairs = []
    for t, cx, cy, first in box_digit_tokens(tokenizer, plan):
        col = min(int(cx * grid / box_max), grid - 1)
        row = min(int(cy * grid / box_max), grid - 1)
        pairs.append((len(prompt_ids) + t - 1, img_pos[row * grid + col], first))
    return pairs


def box_attention_targets(tokenizer, prompt_ids: Sequence[int], image_token_id: int, plan: str,
                          box_max: int = 1000, first_only: bool = False) -> tuple[list[int], list[int]]:
    """(query positions, key positions) of :func:`box_attention_pairs`; ``first_only``: only the
    query that predicts each box's first digit."""
    pairs = [(q, k) for q, k, first in box_attention_pairs(tokenizer, prompt_ids, image_token_id, plan, box_max)
             if first or not first_only]
    return [q for q, _ in pairs], [k for _, k in pairs]


def box_token_weights(tokenizer, labels: torch.Tensor, plans: Sequence[str], box_weight: float) -> torch.Tensor:
    """[B, L] loss weights for ``labels`` (from :meth:`LanguagePlanner.forward_batch`, each plan's
    tokens starting at its first labelled position): ``box_weight`` on box digits, 1 elsewhere."""
    weights = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    for b, plan in enumerate(plans):
        labelled = (labels[b] != -100).nonzero()
        if len(labelled) == 0:
            continue
        start = int(labelled[0])
        for t, *_ in box_digit_tokens(tokenizer, plan):
            weights[b, start + t] = box_weight
    return weights


class BoxAttentionSupervision:
    """Training-only: captures one attention head of one language-model layer (eager attention)
    so that SFT can ask it to look at the named object's visual token while the box digits are
    written. This breaks the slow start of learning *which* visual token a box is about: the
    head's value path then carries the object's position (the grounding head put it there)."""

    def __init__(self, planner: LanguagePlanner, layer: int | None = None, head: int = 0):
        layers = planner.lm.model.layers
        self.layer = len(layers) // 2 if layer is None else layer
        if not 0 <= self.layer < len(layers):
            raise ValueError(f"layer {self.layer} is out of range for {len(layers)} layers")
        self.head = head
        planner.lm.set_attn_implementation("eager")  # sdpa returns no attention weights
        self.weights: torch.Tensor | None = None
        layers[self.layer].self_attn.register_forward_hook(self._capture)

    def _capture(self, module, args, output) -> None:
        self.weights = output[1]  # [B, H, L, L]

    def loss(self, planner: LanguagePlanner, visuals, instructions, plans,
             decision_weight: float = 0.0) -> torch.Tensor:
        """Mean -log attention of the supervised head from each box-digit query to its object,
        plus ``decision_weight x`` the same mean over the queries of each box's first digit only
        (:func:`box_attention_targets` with ``first_only``)."""
        if self.weights is None:
            raise RuntimeError("no attention captured: run the language model forward first")
        rows = []  # (batch index, query, key, first digit), every plan tokenised once
        for b, (vis, ins, plan) in enumerate(zip(visuals, instructions, plans, strict=True)):
            pairs = box_attention_pairs(planner.tokenizer, planner.prompt_ids(vis, ins), planner.image_token_id, plan)
            rows += [(b, q, k, first) for q, k, first in pairs]
        total = self.weights.sum() * 0.0
        for first_only, weight in ((False, 1.0), (True, decision_weight)):
            picked = [r for r in rows if r[3] or not first_only]
            if weight and picked:
                bs, qs, ks, _ = (torch.tensor(c) for c in zip(*picked, strict=True))
                w = self.weights[bs, self.head, qs, ks]  # [N]
                total = total + weight * -torch.log(w.float().clamp_min(1e-6)).mean()
        return total


class SFTModel(nn.Module):
    """Vision encoder + language planner as one module: ``forward(batch) -> (loss, metrics)``.

    With ``aux_weight > 0`` (and one tile per image) a :class:`GroundingHead` on the visual tokens
    adds ``aux_weight x`` its loss; the head is never saved with the planner. ``box_weight``: the
    plan CE of each box-coordinate digit counts this many times (1: the plain token mean), since
    those few tokens are the grounding and the rest of a plan is easy JSON. ``decision_weight``:
    extra box-attention supervision of each box's first digit (:meth:`BoxAttentionSupervision.loss`)."""

    def __init__(self, encoder: VisionEncoder, planner: LanguagePlanner, tiles_per_image: int = 1,
                 aux_weight: float = 0.0, attn_weight: float = 0.0, box_weight: float = 1.0,
                 decision_weight: float = 0.0):
        super().__init__()
        self.encoder, self.planner, self.tiles_per_image = encoder, planner, tiles_per_image
        for name, v in (("aux_weight", aux_weight), ("attn_weight", attn_weight), ("decision_weight", decision_weight)):
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        if not box_weight > 0:
            raise ValueError(f"box_weight must be > 0, got {box_weight!r}")
        if decision_weight and not attn_weight:
            raise ValueError(f"decision_weight={decision_weight!r} needs the box-attention supervision "
                             "(attn_weight > 0)")
        if (aux_weight or attn_weight) and tiles_per_image != 1:
            raise ValueError(f"the grounding auxiliary losses need one tile per image, got {tiles_per_image}")
        self.aux_weight, self.attn_weight = aux_weight, attn_weight
        self.box_weight, self.decision_weight = box_weight, decision_weight
        self.grounding = GroundingHead(planner.lm.config.hidden_size) if aux_weight else None
        self.box_attention = BoxAttentionSupervision(planner) if attn_weight else None

    def visuals(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """[B*T, 3, s, s] -> B tensors [T*tokens, D] (one image's tokens, tile order kept)."""
        device = next(self.encoder.parameters()).device
        emb, tokens = self.encoder(pixel_values.to(device))  # [B*T*tokens, D]
        per_image = sum(tokens[: self.tiles_per_image])
        return list(emb.split(per_image))

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        vis = self.visuals(batch["pixel_values"])
        logits, labels = self.planner.forward_batch(vis, batch["instructions"], batch["plans"])
        weights = None if self.box_weight == 1.0 else box_token_weights(
            self.planner.tokenizer, labels, batch["plans"], self.box_weight)
        loss, acc = plan_token_loss(logits, labels, weights)
        metrics = {"token_acc": float(acc), "plan_loss": float(loss.detach())}
        if self.grounding is not None and "grounding" in batch:
            device = vis[0].device
            aux, aux_metrics = self.grounding.loss(
                torch.stack(vis), {k: v.to(device) for k, v in batch["grounding"].items()})
            loss = loss + self.aux_weight * aux
            metrics.update(aux_metrics)
        if self.box_attention is not None:
            attn = self.box_attention.loss(self.planner, vis, batch["instructions"], batch["plans"],
                                           self.decision_weight)
            loss = loss + self.attn_weight * attn
            metrics["box_attention"] = float(attn.detach())
        return loss, metrics


def box_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre_inside(pred, ref) -> bool:
    """Whether ``pred``'s centre lies inside ``ref``: what 3D grounding needs to find the right object."""
    cx, cy = (pred[0] + pred[2]) / 2, (pred[1] + pred[3]) / 2
    return ref[0] <= cx <= ref[2] and ref[1] <= cy <= ref[3]


def plan_metrics(predicted: str, reference: str, objects: Sequence[dict] | None = None) -> dict:
    """Exact match; for each reference box, its IoU with the predicted box in the same place and
    whether that box's centre lies inside it (``centred``). With the scene's ``objects``
    (``[{"name", "box"}, ...]``, as the data records them) also ``other_object``: whether the
    predicted centre lies inside another object's box instead, i.e. the box is about the wrong
    thing rather than imprecise."""
    from ivl_embodied.plan.schema import PlanParseError, parse_plan

    ref = parse_plan(reference)
    n_boxes = sum((s.box is not None) + (s.target_box is not None) for s in ref.steps)
    try:
        pred = parse_plan(predicted)
    except PlanParseError:
        out = {"parsed": 0.0, "exact": 0.0, "ious": [0.0] * n_boxes, "centred": [False] * n_boxes, "structure": 0.0}
        return out if objects is None else {**out, "other_object": [False] * n_boxes}
    ious, centred, other, same = [], [], [], len(pred.steps) == len(ref.steps)
    for i, r in enumerate(ref.steps):
        p = pred.steps[i] if i < len(pred.steps) else None
        same = same and p is not None and (p.action, p.object, p.target) == (r.action, r.object, r.target)
        for field in ("box", "target_box"):
            rb = getattr(r, field)
            if rb is not None:
                pb = getattr(p, field) if p is not None else None
                ious.append(box_iou(pb, rb) if pb is not None else 0.0)
                centred.append(pb is not None and centre_inside(pb, rb))
                name = r.object if field == "box" else r.target
                other.append(pb is not None and not centred[-1] and any(
                    o["name"] != name and centre_inside(pb, o["box"]) for o in objects or ()))
    out = {"parsed": 1.0, "exact": float(predicted == reference), "ious": ious, "centred": centred,
           "structure": float(same)}
    return out if objects is None else {**out, "other_object": other}


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
            centred: list[bool] = []
            other: list[bool] = []
            # unconstrained greedy decoding: the parse rate then measures the model, not the decoder
            settings = GenerationSettings(max_new_tokens=160, constrained=False)
            for j in holdout[:eval_examples]:
                vis = model.visuals(data.pixel_values([j]))[0]
                text = model.planner.generate(vis, data.examples[j].instruction, settings).text
                m = plan_metrics(text, data.examples[j].plan, data.examples[j].objects or None)
                other.extend(m.pop("other_object", []))
                ious.extend(m.pop("ious"))
                centred.extend(m.pop("centred"))
                for k in agg:
                    agg[k] += m[k] / eval_examples
            out.update(agg)
            out["box_iou"] = sum(ious) / max(len(ious), 1)
            out["box_acc50"] = sum(v > 0.5 for v in ious) / max(len(ious), 1)
            out["box_centred"] = sum(centred) / max(len(centred), 1)
            if other:  # data format 2 records every object's box
                out["box_other_object"] = sum(other) / len(other)
        return out

    return evaluate


def make_batch_fn(data: PlanDataset, seed: int, paraphrase_prob: float, grounding: bool, grid: int,
                  mirror_prob: float = 0.0, retarget_prob: float = 0.0):
    """Indices -> SFT batch. Retargeted tasks (:func:`~ivl_embodied.train.augment.retarget`, each
    example with probability ``retarget_prob``, phrased like a paraphrase), paraphrases and
    mirrorings (:func:`~ivl_embodied.train.augment.mirror_boxes`, each image with probability
    ``mirror_prob``) are drawn from an RNG keyed by (seed, the batch's indices), so a batch is the
    same whenever it is rebuilt (resumed runs see the same data)."""
    for name, p in (("mirror", mirror_prob), ("retarget", retarget_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} probability must be in 0..1, got {p!r}")
    if retarget_prob > 0 and not all(e.objects for e in data.examples):
        raise ValueError("retargeting needs every object's box in the records (data format 2); pass retarget_prob=0")
    if mirror_prob > 0 and data.tiles_per_image != 1:
        raise ValueError(f"mirroring needs one tile per image (the tile order would change), "
                         f"the data has {data.tiles_per_image}; pass mirror_prob=0")

    def batch_fn(indices) -> dict:
        idx = [int(i) for i in indices]
        rng = np.random.default_rng([seed, *idx])
        ex = [data.examples[i] for i in idx]
        instructions, plans = [], []
        for e in ex:
            new = retarget(e.objects, rng) if retarget_prob > 0 and rng.random() < retarget_prob else None
            if new is None:
                instructions.append(paraphrase(e.goal, e.instruction, rng, paraphrase_prob))
                plans.append(e.plan)
            else:
                instructions.append(paraphrase(new[0], "", rng, 1.0))  # a train template or neutral frame
                plans.append(new[1])
        pixels, objects = data.pixel_values(idx), [e.objects for e in ex]
        if mirror_prob > 0:
            flip = rng.random(len(idx)) < mirror_prob
            for i in np.flatnonzero(flip):
                plans[i], objects[i] = mirror_boxes(plans[i], objects[i])
            pixels[torch.from_numpy(flip)] = pixels[torch.from_numpy(flip)].flip(-1)  # one tile per image
        batch = {"pixel_values": pixels, "instructions": instructions, "plans": plans}
        if grounding:
            t = [token_targets(o, grid) for o in objects]
            batch["grounding"] = {k: torch.from_numpy(np.stack([d[k] for d in t])) for k in t[0]}
        return batch

    return batch_fn


def save_planner(model: SFTModel, out: Path, extra: dict | None = None) -> None:
    """Default-planner layout: ``out/vision`` + ``out/language`` + ``vision/ivl_planner.json``."""
    save_vision(model.encoder, out / "vision")
    save_language(model.planner, out / "language")
    meta = {"max_tiles": model.tiles_per_image, "tile_size": model.encoder.config.tile_size, **(extra or {})}
    (out / "vision" / "ivl_planner.json").write_text(json.dumps(meta, indent=2))
    logger.info("saved planner to %s (vision/ + language/)", out)


def load_policy(init: str | Path, device: str | torch.device = "cpu") -> SFTModel:
    """An SFT output directory (``vision/`` + ``language/``) as a trainable fp32 :class:`SFTModel`."""
    from ivl_embodied.checkpoints.internvl import load_language, load_vision
    from ivl_embodied.checkpoints.planner import planner_dirs

    vision_dir, language_dir = planner_dirs(init)
    meta_path = vision_dir / "ivl_planner.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    encoder = load_vision(vision_dir, dtype=torch.float32, device=device)
    planner = load_language(language_dir, dtype=torch.float32, device=device)
    return SFTModel(encoder, planner, tiles_per_image=int(meta.get("max_tiles", 1)))


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
              resume: bool = False, stop_after: int | None = None, progress: bool = True,
              paraphrase_prob: float = 0.5, aux_weight: float = 1.0, attn_weight: float = 1.0,
              init: str | Path | None = None, mirror_prob: float = 0.5, retarget_prob: float = 0.5,
              box_weight: float = 1.0, decision_weight: float = 0.0) -> dict:
    """Run SFT; returns the last logged row. Deterministic in ``train_cfg.seed``.

    ``init``: start from this planner (``vision/`` + ``language/``, or a whole InternVL3.5
    checkpoint directory) with its own tokenizer, instead of a fresh ``model_cfg`` model; its
    tile size must match the data's.

    ``paraphrase_prob``: share of instructions reworded (:func:`~ivl_embodied.train.augment.paraphrase`);
    ``mirror_prob``: share of images mirrored left-right with their boxes (one tile per image only);
    ``retarget_prob``: share of examples given another task on the same scene (needs data format 2);
    ``aux_weight``: weight of the grounding auxiliary loss (0 disables it; needs data that records
    every object's box, i.e. data format 2); ``attn_weight``: weight of the box-attention
    supervision (:class:`BoxAttentionSupervision`; 0 disables it); ``box_weight`` and
    ``decision_weight``: see :class:`SFTModel`."""
    from ivl_embodied.train.trainer import Trainer, make_accelerator

    model_cfg, train_cfg, optim_cfg = model_cfg or ModelConfig(), train_cfg or TrainConfig(), optim_cfg or OptimConfig()

    out = Path(out)
    data = PlanDataset(data_dir)
    if init is not None:

        start = load_policy(init)
        tile = start.encoder.config.tile_size
        if tile != data.tile_size:
            raise ValueError(f"data has {data.tile_size}-px tiles but the planner in {str(init)!r} takes {tile}-px "
                             "tiles: re-render the data with --tile-size")
        model_cfg = dataclasses.replace(model_cfg, tile_size=tile, max_tiles=data.max_tiles,
                                        patch_size=tile // start.encoder.config.patches_per_side)
    if (data.tile_size, data.max_tiles) != (model_cfg.tile_size, model_cfg.max_tiles):
        raise ValueError(f"data has {data.tile_size}-px tiles, max_tiles {data.max_tiles} but the model wants "
                         f"{model_cfg.tile_size} / {model_cfg.max_tiles}: re-render the data or change the model")
    if len(data) <= train_cfg.holdout:
        raise ValueError(f"{len(data)} examples leave nothing to train on after holding back {train_cfg.holdout}")
    acc = make_accelerator(train_cfg)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_cfg.seed)
    grounding = aux_weight > 0
    if grounding and not all(e.objects for e in data.examples):
        raise ValueError(f"{data_dir}: the grounding auxiliary loss needs every object's box in the records; "
                         "re-render the data or pass aux_weight=0")
    if init is None:
        tok = load_or_train_tokenizer(out, data, model_cfg.vocab_size, acc.is_main_process)
        modules = build_planner_modules(model_cfg, tok)
    else:
        modules = (start.encoder, start.planner)
    model = SFTModel(*modules, tiles_per_image=data.tiles_per_image, aux_weight=aux_weight, attn_weight=attn_weight,
                     box_weight=box_weight, decision_weight=decision_weight)
    n_train = len(data) - train_cfg.holdout
    holdout = list(range(n_train, len(data)))
    params = sum(p.numel() for p in model.parameters())
    logger.info("SFT: %.2f M parameters, %d train / %d held-back examples", params / 1e6, n_train, len(holdout))
    if acc.is_main_process:
        (out / "config.json").write_text(json.dumps(
            {"model": to_dict(model_cfg) if init is None else None, "train": to_dict(train_cfg),
             "optim": to_dict(optim_cfg),
             "data": str(data_dir), "data_content_hash": data.manifest["content_hash"],
             "paraphrase_prob": paraphrase_prob, "mirror_prob": mirror_prob, "retarget_prob": retarget_prob,
             "aux_weight": aux_weight,
             "attn_weight": attn_weight,
             "box_weight": box_weight,
             "decision_weight": decision_weight,
             "init": None if init is None else str(init)},
            indent=2))
    batch_fn = make_batch_fn(data, train_cfg.seed, paraphrase_prob, grounding,
                             model_cfg.tile_size // model_cfg.patch_size, mirror_prob, retarget_prob)

    trainer = Trainer(
        model, n_train, batch_fn, out, train_cfg, optim_cfg, accelerator=acc, progress=progress, stage="sft",
        eval_fn=make_eval_fn(data, holdout, train_cfg.eval_examples, train_cfg.batch_size) if holdout else None,
        save_fn=lambda m, o: save_planner(m, o, {"trained_by": "ivl-embodied train sft", "steps": train_cfg.steps,
                                                 "init": None if init is None else str(init),
                                                 "data_content_hash": data.manifest["content_hash"]}))
    return trainer.fit(resume=resume, stop_after=stop_after)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    m, t, o = ModelConfig(), TrainConfig(), OptimConfig()
    add_run_arguments(parser, t, o)
    parser.add_argument("--init", default=None,
                        help="fine-tune this planner (vision/ + language/, or a whole InternVL3.5 checkpoint) "
                             "instead of training a fresh one; the model options below are then ignored")
    g = parser.add_argument_group("model (tile size and max tiles come from the data)")
    for name in ("vision_hidden", "vision_layers", "text_hidden", "text_layers", "vocab_size"):
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(m, name))
    g = parser.add_argument_group("generalisation (see ivl_embodied.train.augment)")
    g.add_argument("--paraphrase-prob", type=float, default=0.5, help="share of instructions reworded")
    g.add_argument("--mirror-prob", type=float, default=0.5,
                   help="share of images mirrored left-right with their boxes (0: off; needs one tile per image)")
    g.add_argument("--retarget-prob", type=float, default=0.5,
                   help="share of examples given another task on the same scene (0: off)")
    g.add_argument("--aux-weight", type=float, default=1.0, help="grounding auxiliary loss weight (0: off)")
    g.add_argument("--attn-weight", type=float, default=1.0, help="box-attention supervision weight (0: off)")
    g.add_argument("--box-weight", type=float, default=1.0,
                   help="weight of each box digit in the plan loss, against 1 for every other token")
    g.add_argument("--decision-weight", type=float, default=0.0,
                   help="extra box-attention supervision of each box's first digit, the token that picks the object")


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
                     stop_after=args.stop_after, progress=not args.no_progress,
                     paraphrase_prob=args.paraphrase_prob, aux_weight=args.aux_weight,
                     attn_weight=args.attn_weight, init=args.init, mirror_prob=args.mirror_prob,
                     retarget_prob=args.retarget_prob, box_weight=args.box_weight,
                     decision_weight=args.decision_weight)
    print(json.dumps(last))
    return 0
