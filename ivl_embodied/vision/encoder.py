"""Vision side: InternViT -> pixel shuffle -> ``mlp1`` (and, for Flash, ViR -> ``mlp2``).

Module names match transformers' ``InternVLModel`` (``vision_tower``,
``multi_modal_projector.{layer_norm,linear_1,linear_2}``) so real ``-HF`` checkpoints load
by prefix; the Flash extras are ``mlp2.{layer_norm,linear_1,linear_2,linear_3}`` and
``vision_router.*`` (see :mod:`ivl_embodied.vision.vir`; ``router_arch`` picks our router or the
released one, whose tensors are then ``vision_router.{pooling_before_gating,gating}.*``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from transformers import InternVLVisionConfig, InternVLVisionModel

from ivl_embodied.embeddings.payload import VisualEmbeddings
from ivl_embodied.vision.tiling import Tiles
from ivl_embodied.vision.vir import ROUTER_ARCHS, ViRPolicy, route_tiles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisionEncoderConfig:
    """Shapes of the vision side; ``vision_config`` is transformers' InternVLVisionConfig."""

    vision_config: InternVLVisionConfig
    text_hidden_size: int
    downsample_ratio: float = 0.5
    projector_hidden_act: str = "gelu"
    with_vir: bool = False
    router_heads: int = 16
    encoder_id: str = "internvl3_5"
    router_arch: str = "ivl"  # "ivl" (VisualResolutionRouter) | "released" (ReleasedFlashRouter)
    vir_policy: ViRPolicy | None = None  # the routing the checkpoint ships with (released: flash_* keys)

    def __post_init__(self) -> None:
        vc = self.vision_config
        if self.router_arch not in ROUTER_ARCHS:
            raise ValueError(f"router_arch must be one of {sorted(ROUTER_ARCHS)}, got {self.router_arch!r}")
        if self.vir_policy is not None and not isinstance(self.vir_policy, ViRPolicy):
            raise TypeError(f"vir_policy must be a ViRPolicy or None, got {type(self.vir_policy).__name__}")
        if self.downsample_ratio != 0.5:
            raise ValueError(f"downsample_ratio must be 0.5 (InternVL3.5), got {self.downsample_ratio!r}")
        if self.text_hidden_size <= 0:
            raise ValueError(f"text_hidden_size must be positive, got {self.text_hidden_size!r}")
        if vc.image_size[0] != vc.image_size[1] or vc.patch_size[0] != vc.patch_size[1]:
            raise ValueError(f"square tiles/patches required, got {vc.image_size}/{vc.patch_size}")
        side = self.patches_per_side
        need = 4 if self.with_vir else 2
        if vc.image_size[0] % vc.patch_size[0] or side % need:
            raise ValueError(
                f"tile {vc.image_size[0]} / patch {vc.patch_size[0]} = {side} patches per side must be a "
                f"multiple of {need} (pixel shuffle{' 0.25 for ViR' if self.with_vir else ''})"
            )

    @property
    def tile_size(self) -> int:
        return int(self.vision_config.image_size[0])

    @property
    def patches_per_side(self) -> int:
        return int(self.vision_config.image_size[0] // self.vision_config.patch_size[0])

    @property
    def tokens_full(self) -> int:
        """Tokens per tile after pixel shuffle 0.5 (256 for 448-px tiles)."""
        return (self.patches_per_side // 2) ** 2

    @property
    def tokens_compressed(self) -> int:
        """Tokens per tile after pixel shuffle 0.25 (64 for 448-px tiles)."""
        return (self.patches_per_side // 4) ** 2


def pixel_shuffle(features: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """InternVL's pixel shuffle, op for op as transformers' ``InternVLModel.pixel_shuffle``.

    [B, W, H, C] -> [B, W*s, H*s, C/s^2]; the exact view/permute order matters, since the
    projector's first Linear was trained on this channel layout.
    """
    b, w, h, c = features.shape
    if (h * scale_factor) % 1 or (w * scale_factor) % 1:
        raise ValueError(f"feature map {w}x{h} is not divisible by 1/{scale_factor}")
    x = features.reshape(b, w, int(h * scale_factor), int(c / scale_factor))  # [B, W, H*s, C/s]
    x = x.permute(0, 2, 1, 3).contiguous()  # [B, H*s, W, C/s]
    x = x.view(b, int(h * scale_factor), int(w * scale_factor), int(c / scale_factor**2))  # [B, H*s, W*s, C/s^2]
    return x.permute(0, 2, 1, 3).contiguous()  # [B, W*s, H*s, C/s^2]


class MultiModalProjector(nn.Module):
    """``mlp1``: LayerNorm(4C) -> Linear(4C->D) -> GELU -> Linear(D->D)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim)
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(self.layer_norm(x))))


class CompressedProjector(nn.Module):
    """``mlp2``: LN(16C) -> Linear(16C->2D) -> GELU -> Linear(2D->2D) -> GELU -> Linear(2D->D)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim)
        self.linear_1 = nn.Linear(in_dim, 2 * out_dim)
        self.linear_2 = nn.Linear(2 * out_dim, 2 * out_dim)
        self.linear_3 = nn.Linear(2 * out_dim, out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.linear_1(self.layer_norm(x)))
        return self.linear_3(self.act(self.linear_2(x)))


class VisionEncoder(nn.Module):
    """Tiles -> LLM-space visual tokens (256 or, routed by ViR, 64 per 448-px tile)."""

    def __init__(self, config: VisionEncoderConfig):
        super().__init__()
        self.config = config
        c = config.vision_config.hidden_size
        self.vision_tower = InternVLVisionModel(config.vision_config)
        self.multi_modal_projector = MultiModalProjector(4 * c, config.text_hidden_size)
        if config.with_vir:
            self.mlp2 = CompressedProjector(16 * c, config.text_hidden_size)
            self.vision_router = ROUTER_ARCHS[config.router_arch](c, config.router_heads)

    @property
    def dtype(self) -> torch.dtype:
        return self.multi_modal_projector.linear_1.weight.dtype

    def vit_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Last ViT hidden state without CLS, as a patch grid: [N, side, side, C]."""
        out = self.vision_tower(pixel_values=pixel_values.to(self.dtype))
        feats = out.last_hidden_state[:, 1:, :]  # [N, side*side, C]  (CLS dropped)
        n, p, c = feats.shape
        side = int(p**0.5)
        return feats.reshape(n, side, side, c)  # [N, side, side, C]

    def project_full(self, grid: torch.Tensor) -> torch.Tensor:
        """[N, side, side, C] -> [N, (side/2)^2, D] via pixel shuffle 0.5 + mlp1."""
        x = pixel_shuffle(grid, 0.5)  # [N, side/2, side/2, 4C]
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # [N, (side/2)^2, 4C]
        return self.multi_modal_projector(x)  # [N, (side/2)^2, D]

    def project_compressed(self, grid: torch.Tensor) -> torch.Tensor:
        """[N, side, side, C] -> [N, (side/4)^2, D] via pixel shuffle 0.25 + mlp2."""
        if not self.config.with_vir:
            raise RuntimeError("this encoder has no mlp2 (not a Flash/ViR checkpoint)")
        x = pixel_shuffle(grid, 0.25)  # [N, side/4, side/4, 16C]
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # [N, (side/4)^2, 16C]
        return self.mlp2(x)  # [N, (side/4)^2, D]

    def forward(
        self, pixel_values: torch.Tensor, policy: ViRPolicy | None = None
    ) -> tuple[torch.Tensor, list[int]]:
        """Differentiable forward: ([sum(tokens), D] in tile order, tokens per tile)."""
        grid = self.vit_features(pixel_values)  # [N, side, side, C]
        policy = policy or ViRPolicy(mode="full")
        if policy.mode == "full":
            full = self.project_full(grid)  # [N, T256, D]
            return full.reshape(-1, full.shape[-1]), [full.shape[1]] * full.shape[0]
        if not self.config.with_vir:
            raise ValueError(f"ViR mode {policy.mode!r} needs a Flash/ViR checkpoint with mlp2 + router")
        if policy.mode == "compressed":
            compress = torch.ones(grid.shape[0], dtype=torch.bool, device=grid.device)
        else:
            n, s, _, c = grid.shape
            probs = self.vision_router(grid.reshape(n, s * s, c))  # [N, 2]
            compress = route_tiles(probs[:, 1], policy)  # [N] bool
        blocks: list[torch.Tensor] = []
        for i in range(grid.shape[0]):  # tile order is kept: row-major grid, thumbnail last
            tile = grid[i : i + 1]  # [1, side, side, C]
            block = self.project_compressed(tile) if compress[i] else self.project_full(tile)
            blocks.append(block[0])  # [T_i, D]
        return torch.cat(blocks, dim=0), [int(b.shape[0]) for b in blocks]

    @torch.no_grad()
    def encode(self, tiles: Tiles, policy: ViRPolicy | None = None) -> VisualEmbeddings:
        """Inference entry point: tiles of one image -> :class:`VisualEmbeddings`."""
        if tiles.tile_size != self.config.tile_size:
            raise ValueError(f"tiles are {tiles.tile_size} px but this encoder takes {self.config.tile_size} px")
        device = next(self.parameters()).device
        emb, tokens = self.forward(tiles.pixel_values.to(device), policy)
        logger.debug("encoded %d tiles into %d tokens %s", tiles.num_tiles, emb.shape[0], tokens)
        return VisualEmbeddings.from_tiles(emb, tokens, tiles, self.config.encoder_id)


def encode_image(encoder: VisionEncoder, image, policy: ViRPolicy | None = None,
                 max_tiles: int = 12) -> VisualEmbeddings:
    """Image (HxWx3 uint8 numpy or PIL) -> :class:`VisualEmbeddings` with the encoder's tile size."""
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    tiles = tile_image(image, TilingConfig(tile_size=encoder.config.tile_size, max_tiles=max_tiles))
    return encoder.encode(tiles, policy)
