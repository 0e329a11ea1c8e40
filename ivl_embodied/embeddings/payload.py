"""LLM-space visual embeddings of one image plus the metadata the wire carries.

:class:`VisualEmbeddings` is the ROS-free twin of ``ivl_embodied_msgs/VisualEmbedding``:
:meth:`~VisualEmbeddings.to_payload` returns exactly that message's fields (``data`` as
little-endian row-major bytes of ``[sum(tokens_per_tile), hidden_size]``), and
:meth:`~VisualEmbeddings.from_payload` validates and rebuilds it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

DTYPE_BFLOAT16 = 0
DTYPE_FLOAT16 = 1
DTYPE_FLOAT32 = 2

_TORCH_DTYPES = {DTYPE_BFLOAT16: torch.bfloat16, DTYPE_FLOAT16: torch.float16, DTYPE_FLOAT32: torch.float32}
_DTYPE_CODES = {v: k for k, v in _TORCH_DTYPES.items()}
_DTYPE_NAMES = {"bf16": DTYPE_BFLOAT16, "fp16": DTYPE_FLOAT16, "fp32": DTYPE_FLOAT32}
_ITEMSIZE = {DTYPE_BFLOAT16: 2, DTYPE_FLOAT16: 2, DTYPE_FLOAT32: 4}

PAYLOAD_FIELDS = (
    "source_width", "source_height", "grid_cols", "grid_rows", "has_thumbnail", "tile_size",
    "tokens_per_tile", "hidden_size", "dtype", "encoder_id", "data",
)


def dtype_code(dtype: str | int | torch.dtype) -> int:
    """Message dtype code for ``'bf16'|'fp16'|'fp32'``, a torch dtype, or a code."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPE_CODES:
            raise ValueError(f"unsupported embedding dtype {dtype}; use bf16, fp16 or fp32")
        return _DTYPE_CODES[dtype]
    if isinstance(dtype, str):
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"unknown dtype name {dtype!r}; expected one of {sorted(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[dtype]
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"unknown dtype code {dtype!r}; expected 0 (bf16), 1 (fp16) or 2 (fp32)")
    return int(dtype)


@dataclass(frozen=True)
class VisualEmbeddings:
    """Visual tokens of one image in the LLM's hidden space, tiles in order."""

    embeddings: torch.Tensor  # [sum(tokens_per_tile), hidden_size]
    tokens_per_tile: tuple[int, ...]
    source_width: int
    source_height: int
    grid_cols: int
    grid_rows: int
    has_thumbnail: bool
    tile_size: int
    encoder_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens_per_tile", tuple(int(t) for t in self.tokens_per_tile))
        if self.embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [tokens, hidden], got shape {tuple(self.embeddings.shape)}")
        if sum(self.tokens_per_tile) != self.embeddings.shape[0]:
            raise ValueError(
                f"tokens_per_tile {self.tokens_per_tile} sums to {sum(self.tokens_per_tile)} but "
                f"embeddings have {self.embeddings.shape[0]} rows"
            )
        n_tiles = self.grid_cols * self.grid_rows + int(self.has_thumbnail)
        if len(self.tokens_per_tile) != n_tiles:
            raise ValueError(
                f"{len(self.tokens_per_tile)} tiles in tokens_per_tile but grid {self.grid_cols}x"
                f"{self.grid_rows} (+thumbnail={self.has_thumbnail}) has {n_tiles}"
            )
        if any(t <= 0 for t in self.tokens_per_tile):
            raise ValueError(f"tokens_per_tile must be positive, got {self.tokens_per_tile}")

    @classmethod
    def from_tiles(cls, embeddings: torch.Tensor, tokens_per_tile, tiles: Any,
                   encoder_id: str = "") -> VisualEmbeddings:
        """Embeddings of ``tiles`` (a :class:`~ivl_embodied.vision.tiling.Tiles`) with its metadata."""
        return cls(
            embeddings=embeddings,
            tokens_per_tile=tuple(tokens_per_tile),
            source_width=tiles.source_width,
            source_height=tiles.source_height,
            grid_cols=tiles.grid_cols,
            grid_rows=tiles.grid_rows,
            has_thumbnail=tiles.has_thumbnail,
            tile_size=tiles.tile_size,
            encoder_id=encoder_id,
        )

    @property
    def hidden_size(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def num_tokens(self) -> int:
        return int(self.embeddings.shape[0])

    def to_payload(self, dtype: str | int | torch.dtype = "bf16") -> dict[str, Any]:
        """The message fields; ``data`` is little-endian row-major bytes of ``dtype``."""
        code = dtype_code(dtype)
        t = self.embeddings.detach().to("cpu", _TORCH_DTYPES[code]).contiguous()
        if code == DTYPE_BFLOAT16:
            arr = t.view(torch.int16).numpy()  # bf16 has no numpy dtype: ship its raw 16 bits
        else:
            arr = t.numpy()
        if sys.byteorder != "little":
            arr = arr.byteswap()
        return {
            "source_width": self.source_width,
            "source_height": self.source_height,
            "grid_cols": self.grid_cols,
            "grid_rows": self.grid_rows,
            "has_thumbnail": bool(self.has_thumbnail),
            "tile_size": self.tile_size,
            "tokens_per_tile": list(self.tokens_per_tile),
            "hidden_size": self.hidden_size,
            "dtype": code,
            "encoder_id": self.encoder_id,
            "data": arr.tobytes(),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], device: str | torch.device = "cpu") -> VisualEmbeddings:
        """Rebuild from message fields; the tensor keeps the payload's dtype."""
        missing = [f for f in PAYLOAD_FIELDS if f not in payload]
        if missing:
            raise ValueError(f"payload is missing fields {missing}")
        code = dtype_code(int(payload["dtype"]))
        hidden = int(payload["hidden_size"])
        tokens = tuple(int(t) for t in payload["tokens_per_tile"])
        data = bytes(payload["data"])
        expected = sum(tokens) * hidden * _ITEMSIZE[code]
        if hidden <= 0 or len(data) != expected:
            raise ValueError(
                f"payload data has {len(data)} bytes; tokens {sum(tokens)} x hidden {hidden} x "
                f"{_ITEMSIZE[code]} bytes = {expected}"
            )
        np_dtype = {DTYPE_BFLOAT16: "<i2", DTYPE_FLOAT16: "<f2", DTYPE_FLOAT32: "<f4"}[code]
        arr = np.frombuffer(data, dtype=np_dtype).astype(np_dtype[1:], copy=True)  # native order
        t = torch.from_numpy(arr)
        if code == DTYPE_BFLOAT16:
            t = t.view(torch.bfloat16)
        t = t.view(sum(tokens), hidden).to(device)  # [tokens, hidden]
        return cls(
            embeddings=t,
            tokens_per_tile=tokens,
            source_width=int(payload["source_width"]),
            source_height=int(payload["source_height"]),
            grid_cols=int(payload["grid_cols"]),
            grid_rows=int(payload["grid_rows"]),
            has_thumbnail=bool(payload["has_thumbnail"]),
            tile_size=int(payload["tile_size"]),
            encoder_id=str(payload["encoder_id"]),
        )
