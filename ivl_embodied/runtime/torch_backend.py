"""``torch`` backend: the model package's :class:`VisionEncoder` itself (the reference)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.runtime.base import VisionBackend
from ivl_embodied.runtime.meta import GraphMeta
from ivl_embodied.vision.tiling import Tiles
from ivl_embodied.vision.vir import ViRPolicy

logger = logging.getLogger(__name__)


class TorchVisionBackend(VisionBackend):
    """``load_vision(path)`` + ``VisionEncoder.encode``; bf16 on CUDA, fp32 on CPU by default."""

    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None):
        from ivl_embodied.checkpoints.internvl import load_vision

        if dtype is None:
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        self.encoder = load_vision(path, dtype=dtype, device=device)
        self.meta = GraphMeta.from_encoder_config(self.encoder.config)
        self.device = device
        logger.info("torch vision backend: %s on %s (%s)", path, device, dtype)

    def encode(self, tiles: Tiles, policy: ViRPolicy | None = None) -> VisualEmbeddings:
        if self.encoder is None:
            raise RuntimeError("torch vision backend is closed")
        return self.encoder.encode(tiles, policy)

    def close(self) -> None:
        self.encoder = None
        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()
