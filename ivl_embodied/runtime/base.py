"""The vision-backend seam: ``encode(tiles, policy) -> VisualEmbeddings``.

Three backends implement it (torch, onnxruntime, TensorRT). The exported graphs run every
tile through both projectors and the router in one batch; the per-request ViR decision
(``route_tiles``: above the ``relative`` quantile *and* at least ``absolute``) and the
assembly of 64/256-token blocks in tile order happen here, in Python, identically for every
backend -- so a policy means the same thing whichever engine produced the features.
"""

from __future__ import annotations

import abc
import logging

import torch

from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.runtime.meta import GraphMeta
from ivl_embodied.vision.tiling import Tiles
from ivl_embodied.vision.vir import ViRPolicy, route_tiles

logger = logging.getLogger(__name__)


class BackendUnavailableError(ImportError):
    """A backend's runtime (TensorRT, a CUDA execution provider, a GPU) is not present here."""


class VisionBackend(abc.ABC):
    """Tiles of one image -> LLM-space visual tokens."""

    name: str = ""
    meta: GraphMeta  # set by each backend from its graph / checkpoint

    @property
    def tile_size(self) -> int:
        return self.meta.tile_size

    @property
    def with_vir(self) -> bool:
        return self.meta.with_vir

    @abc.abstractmethod
    def encode(self, tiles: Tiles, policy: ViRPolicy | None = None) -> VisualEmbeddings: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Free engines, sessions and device memory; the backend is unusable afterwards."""

    def __enter__(self) -> VisionBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_tiles(tiles: Tiles, meta: GraphMeta, max_batch: int | None = None) -> None:
    """Refuse tiles the graph cannot take, naming the offending value."""
    pv = tiles.pixel_values
    if tiles.tile_size != meta.tile_size or tuple(pv.shape[1:]) != (3, meta.tile_size, meta.tile_size):
        raise ValueError(
            f"tiles are {tiles.tile_size} px (pixel_values {tuple(pv.shape)}) but this graph takes "
            f"[N, 3, {meta.tile_size}, {meta.tile_size}]"
        )
    if tiles.num_tiles < 1:
        raise ValueError(f"need at least one tile, got pixel_values {tuple(pv.shape)}")
    if max_batch is not None and tiles.num_tiles > max_batch:
        raise ValueError(
            f"{tiles.num_tiles} tiles exceed the engine's optimisation profile (max {max_batch} tiles, "
            f"thumbnail included); rebuild with a larger --max-tiles or lower max_num_tiles"
        )


def assemble_embeddings(
    tiles: Tiles,
    policy: ViRPolicy | None,
    meta: GraphMeta,
    full: torch.Tensor,
    p_compress: torch.Tensor | None = None,
    compressed: torch.Tensor | None = None,
) -> VisualEmbeddings:
    """Graph outputs of all tiles -> per-request routed :class:`VisualEmbeddings`.

    ``full`` [N, T256, D], ``p_compress`` [N], ``compressed`` [N, T64, D]; same rule and tile
    order as :meth:`ivl_embodied.vision.encoder.VisionEncoder.forward`.
    """
    policy = policy or ViRPolicy(mode="full")
    n = tiles.num_tiles
    if tuple(full.shape) != (n, meta.tokens_full, meta.text_hidden_size):
        raise RuntimeError(f"graph returned {tuple(full.shape)} for {n} tiles, expected "
                           f"{(n, meta.tokens_full, meta.text_hidden_size)}")
    if policy.mode == "full":
        compress = torch.zeros(n, dtype=torch.bool)
    elif not meta.with_vir or p_compress is None or compressed is None:
        raise ValueError(f"ViR mode {policy.mode!r} needs a Flash/ViR checkpoint with mlp2 + router")
    else:
        compress = route_tiles(p_compress.float().cpu(), policy)  # [N] bool
    blocks = [compressed[i] if compress[i] else full[i] for i in range(n)]  # tile order: row-major, thumb last
    emb = torch.cat(blocks, dim=0)  # [sum(T_i), D]
    tokens = [int(b.shape[0]) for b in blocks]
    logger.debug("assembled %d tiles into %d tokens %s", n, emb.shape[0], tokens)
    return VisualEmbeddings.from_tiles(emb, tokens, tiles, meta.encoder_id)
