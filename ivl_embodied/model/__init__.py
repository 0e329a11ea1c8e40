"""ivl_embodied.model: InternVL3.5 vision side, ViR, language planner, checkpoints.

Short API (vision side and language side run apart, e.g. on two machines)::

    from ivl_embodied.model import load_vision, load_language, encode_image, ViRPolicy
    enc = load_vision("ckpt/vision")                      # or a full InternVL3_5-*-HF dir
    emb = encode_image(enc, rgb_uint8_hxwx3, policy=ViRPolicy("auto"))
    payload = emb.to_payload("bf16")                      # VisualEmbedding message fields
    planner = load_language("ckpt/language")
    out = planner.generate(VisualEmbeddings.from_payload(payload), "put the red cube in the green bowl")
    out.plan, out.text                                    # always parses (constrained decoding)

Heavy imports (torch, transformers) happen on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TilingConfig": "tiling", "Tiles": "tiling", "tile_image": "tiling", "tile_frames": "tiling",
    "VisualEmbeddings": "embeddings",
    "VisionEncoder": "vision", "VisionEncoderConfig": "vision", "pixel_shuffle": "vision",
    "ViRPolicy": "vir", "VisualResolutionRouter": "vir", "route_tiles": "vir",
    "LanguagePlanner": "planner", "PlannerConfig": "planner", "GenerationSettings": "planner",
    "PlanOutput": "planner", "build_prompt": "planner",
    "PlanAutomaton": "constrained", "TokenConstraint": "constrained",
    "load_vision": "checkpoints", "load_language": "checkpoints", "split_checkpoint": "checkpoints",
    "save_vision": "checkpoints", "save_language": "checkpoints",
    "ModelPlanner": "agent", "make_planner": "agent", "planner_dirs": "agent",
}

__all__ = sorted([*_EXPORTS, "encode_image"])


def encode_image(encoder: Any, image: Any, policy: Any = None, max_tiles: int = 12) -> Any:
    """Image (HxWx3 uint8 numpy or PIL) -> :class:`VisualEmbeddings` with the encoder's tile size."""
    from .tiling import TilingConfig, tile_image

    tiles = tile_image(image, TilingConfig(tile_size=encoder.config.tile_size, max_tiles=max_tiles))
    return encoder.encode(tiles, policy)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
