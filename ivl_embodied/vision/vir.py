"""ViR -- Visual Resolution Router (InternVL3.5-Flash).

The router reads each tile's last ViT hidden state (patch tokens, no CLS, before pixel
shuffle), pools it with cross-attention from one learned query, and a gating MLP gives
``[p_keep, p_compress]``. A tile goes to the 64-token path (pixel shuffle 0.25 + ``mlp2``)
when ``p_compress`` is above the request's ``relative`` quantile over its tiles *and* at
least ``absolute``; otherwise to the 256-token path (pixel shuffle 0.5 + ``mlp1``). A request
of one tile (our default planner sees each frame as one tile) has no quantile to rank against,
so there the router's own decision applies: compress when ``p_compress >= max(0.5, absolute)``.

Weight names (our choice; Flash checkpoints in this project use them under
``model.vision_router.``): ``query [1, C]``, ``attn.{in_proj_weight,in_proj_bias,
out_proj.weight,out_proj.bias}`` (``nn.MultiheadAttention``), ``blocks.{0..3}.{fc1,fc2,norm}``,
``norm``, ``head``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ROUTER_BLOCKS = 4
MODES = ("auto", "full", "compressed")


@dataclass(frozen=True)
class ViRPolicy:
    """Per-request routing: ``mode`` 'auto' (router decides), 'full' (all 256), 'compressed' (all 64)."""

    mode: str = "auto"
    relative: float = 0.5
    absolute: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ViR mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.relative <= 1.0:
            raise ValueError(f"relative quantile must be in [0, 1], got {self.relative!r}")
        if not 0.0 <= self.absolute <= 1.0:
            raise ValueError(f"absolute threshold must be in [0, 1], got {self.absolute!r}")


def route_tiles(p_compress: torch.Tensor, policy: ViRPolicy) -> torch.Tensor:
    """Which tiles to compress: ``p > quantile(p, relative)`` and ``p >= absolute``. [N] -> [N] bool.

    One tile: ``p >= max(0.5, absolute)`` (the quantile of one value is the value itself)."""
    if policy.mode == "full":
        return torch.zeros_like(p_compress, dtype=torch.bool)
    if policy.mode == "compressed":
        return torch.ones_like(p_compress, dtype=torch.bool)
    p = p_compress.detach().float()
    if p.numel() == 1:
        return p >= max(0.5, policy.absolute)
    threshold = torch.quantile(p, policy.relative)  # linear interpolation, as numpy's default
    return (p > threshold) & (p >= policy.absolute)


def _heads_for(hidden: int, wanted: int) -> int:
    """``wanted`` heads when they divide ``hidden``, else the largest divisor below it."""
    for h in range(min(wanted, hidden), 0, -1):
        if hidden % h == 0:
            return h
    return 1


class _GateBlock(nn.Module):
    """x + LayerNorm(Linear(4C->C)(GELU(Linear(C->4C)(x))))."""

    def __init__(self, c: int):
        super().__init__()
        self.fc1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * c, c)
        self.norm = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.fc2(self.act(self.fc1(x))))


class VisualResolutionRouter(nn.Module):
    """[N, P, C] patch features -> [N, 2] softmax ``(p_keep_256, p_compress_64)``."""

    def __init__(self, hidden: int, heads: int = 16):
        super().__init__()
        self.num_heads = _heads_for(hidden, heads)
        self.query = nn.Parameter(torch.randn(1, hidden) * 0.02)
        self.attn = nn.MultiheadAttention(hidden, self.num_heads, batch_first=True)
        self.blocks = nn.ModuleList(_GateBlock(hidden) for _ in range(ROUTER_BLOCKS))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 2)

    def logits(self, patches: torch.Tensor) -> torch.Tensor:
        n = patches.shape[0]
        q = self.query.unsqueeze(0).expand(n, 1, -1)  # [N, 1, C]
        pooled, _ = self.attn(q, patches, patches, need_weights=False)  # [N, 1, C]
        x = pooled[:, 0, :]  # [N, C]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # [N, 2]

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.logits(patches).softmax(dim=-1)  # [N, 2]
