"""``ivl-embodied checkpoint {inspect,split}``: look into and split InternVL3.5 checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import torch

logger = logging.getLogger(__name__)

_DTYPES = {"keep": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    split = sub.add_parser("split", help="split a full InternVL3.5 dir into vision and language dirs")
    split.add_argument("src", help="local InternVL3.5 -HF (or Flash) checkpoint directory")
    split.add_argument("--vision-out", required=True, help="output dir for ViT + mlp1 [+ mlp2 + router]")
    split.add_argument("--language-out", required=True, help="output dir for the LM + tokenizer")
    split.add_argument("--dtype", choices=sorted(_DTYPES), default="keep", help="weight dtype to write")
    inspect = sub.add_parser("inspect", help="print what a checkpoint directory holds, as JSON")
    inspect.add_argument("src")


def _inspect(src: str) -> dict:
    from ivl_embodied.checkpoints.internvl import checkpoint_kind, full_layout, load_language, load_vision

    kind = checkpoint_kind(src)
    info: dict = {"path": src, "kind": kind}
    if kind == "internvl":
        info["layout"] = full_layout(src)  # "hf" (transformers) or "released" (OpenGVLab remote-code format)
    if kind in ("internvl", "vision"):
        enc = load_vision(src, dtype=None)
        c = enc.config
        info["vision"] = {
            "params": sum(p.numel() for p in enc.parameters()),
            "tile_size": c.tile_size,
            "tokens_per_tile": c.tokens_full,
            "vir": c.with_vir,
            "router": c.router_arch if c.with_vir else None,
            "vir_policy": dataclasses.asdict(c.vir_policy) if c.vir_policy is not None else None,
            "text_hidden_size": c.text_hidden_size,
            "encoder_id": c.encoder_id,
        }
    if kind in ("internvl", "language"):
        pl = load_language(src, dtype=None)
        info["language"] = {
            "params": sum(p.numel() for p in pl.lm.parameters()),
            "class": type(pl.lm).__name__,
            "hidden_size": pl.hidden_size,
            "vocab": len(pl.tokenizer),
            "image_token_id": pl.image_token_id,
        }
    return info


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.checkpoints.internvl import split_checkpoint

    if args.action == "inspect":
        print(json.dumps(_inspect(args.src), indent=2))
        return 0
    vision, language = split_checkpoint(args.src, args.vision_out, args.language_out, dtype=_DTYPES[args.dtype])
    print(json.dumps({"vision": str(vision), "language": str(language)}))
    return 0
