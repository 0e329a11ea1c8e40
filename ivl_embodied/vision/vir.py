"""ViR -- Visual Resolution Router (InternVL3.5-Flash).

The router reads each tile's last ViT hidden state (patch tokens, no CLS, before pixel
shuffle), pools it with cross-attention from one learned query, and a gating MLP gives
``[p_keep, p_compress]``. A tile goes to the 64-token path (pixel shuffle 0.25 + ``mlp2``)
when ``p_compress`` is above the request's ``relative`` quantile over its tiles *and* at
least ``absolute``; otherwise to the 256-token path (pixel shuffle 0.5 + ``mlp1``). A request
of one tile (our default planner sees each frame as one tile) has no quantile to rank against,
so there the router's own decision applies: compress when ``p_compress >= max(0.5, absolute)``.

Two architectures of the router live here:

* :class:`VisualResolutionRouter` -- ours (``router_arch="ivl"``). Weight names (our choice;
  Flash checkpoints written by this project use them under ``model.vision_router.``):
  ``query [1, C]``, ``attn.{in_proj_weight,in_proj_bias,out_proj.weight,out_proj.bias}``
  (``nn.MultiheadAttention``), ``blocks.{0..3}.{fc1,fc2,norm}``, ``norm``, ``head``.
* :class:`ReleasedFlashRouter` -- the router as OpenGVLab released it in the InternVL3.5-Flash
  checkpoints (``router_arch="released"``), with the released parameter names
  (``pooling_before_gating.*``, ``gating.*``) and the released forward; see its docstring.

Both return ``[N, 2]`` as ``(p_keep_256, p_compress_64)``, so everything downstream (routing,
export, router training) reads column 1 as the compress probability whichever is loaded.

:class:`ViRPolicy` ``single_tile`` chooses what a one-tile request does: ``"router"`` (ours,
above) or ``"quantile"`` -- the rule applied literally, as the released forward does, so a
lone tile (never strictly above its own quantile) is never compressed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ROUTER_BLOCKS = 4
MODES = ("auto", "full", "compressed")
SINGLE_TILE_RULES = ("router", "quantile")
RELEASED_ROUTER_HEADS = 16  # fixed in the released code (CrossAttentionPooling(dim, num_heads=16))


@dataclass(frozen=True)
class ViRPolicy:
    """Per-request routing: ``mode`` 'auto' (router decides), 'full' (all 256), 'compressed' (all 64)."""

    mode: str = "auto"
    relative: float = 0.5
    absolute: float = 0.0
    single_tile: str = "router"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ViR mode must be one of {MODES}, got {self.mode!r}")
        if self.single_tile not in SINGLE_TILE_RULES:
            raise ValueError(f"single_tile must be one of {SINGLE_TILE_RULES}, got {self.single_tile!r}")
        if not 0.0 <= self.relative <= 1.0:
            raise ValueError(f"relative quantile must be in [0, 1], got {self.relative!r}")
        if not 0.0 <= self.absolute <= 1.0:
            raise ValueError(f"absolute threshold must be in [0, 1], got {self.absolute!r}")


def route_tiles(p_compress: torch.Tensor, policy: ViRPolicy) -> torch.Tensor:
    """Which tiles to compress: ``p > quantile(p, relative)`` and ``p >= absolute``. [N] -> [N] bool.

    One tile with ``single_tile="router"``: ``p >= max(0.5, absolute)`` (the quantile of one value
    is the value itself); with ``single_tile="quantile"`` the rule as written (never compressed)."""
    if policy.mode == "full":
        return torch.zeros_like(p_compress, dtype=torch.bool)
    if policy.mode == "compressed":
        return torch.ones_like(p_compress, dtype=torch.bool)
    p = p_compress.detach().float()
    if p.numel() == 1 and policy.single_tile == "router":
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


# -- the router as released in InternVL3.5-Flash ----------------------------------------------------
class _Indexed(nn.Module):
    """A container whose children are named ``"0"``, ``"1"``, ... at given indices.

    The released checkpoints were saved from ``nn.Sequential`` stacks with parameter-free
    layers (GELU, Dropout) in between, so their tensors sit at sparse indices such as
    ``block1.{0,3,5}``; this reproduces the names without the parameter-free slots."""

    def __init__(self, layers: dict[int, nn.Module]):
        super().__init__()
        for index, layer in layers.items():
            self.add_module(str(index), layer)

    def at(self, index: int) -> nn.Module:
        return self._modules[str(index)]


class _ReleasedGateBlock(_Indexed):
    """``x -> LayerNorm(Linear(4C->C)(GELU(Linear(C->4C)(x))))`` at indices 0, 3, 5 (dropout: eval)."""

    def __init__(self, c: int, expansion: int = 4):
        super().__init__({0: nn.Linear(c, expansion * c), 3: nn.Linear(expansion * c, c), 5: nn.LayerNorm(c)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.at(5)(self.at(3)(nn.functional.gelu(self.at(0)(x))))


class ReleasedGating(nn.Module):
    """Released ``gating``: 4 residual blocks ``x + block(x)``, then ``gate`` = LayerNorm -> Linear(C->2).

    Parameter names: ``block{1..4}.{0,3,5}.{weight,bias}``, ``gate.{0,1}.{weight,bias}``."""

    def __init__(self, c: int):
        super().__init__()
        for i in range(1, ROUTER_BLOCKS + 1):
            self.add_module(f"block{i}", _ReleasedGateBlock(c))
        self.gate = _Indexed({0: nn.LayerNorm(c), 1: nn.Linear(c, 2)})

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, ROUTER_BLOCKS + 1):
            x = x + self._modules[f"block{i}"](x)
        return self.gate.at(1)(self.gate.at(0)(x))  # [N, 2], released column order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(dim=-1)


class ReleasedCrossAttentionPooling(nn.Module):
    """Released ``pooling_before_gating``: one learned query, four attention stages.

    Parameter names: ``query_token [1, C]``, ``attn{1..4}.{in_proj_weight, in_proj_bias,
    out_proj.weight, out_proj.bias}`` (``nn.MultiheadAttention``, 16 heads), ``norm{1..4}``.
    As released (the remote code's and LMDeploy's forward alike), stage 1 is
    ``norm1(attn1(query, x, x))`` and stages 2, 3 and 4 all apply ``attn2`` + ``norm2``;
    ``attn3``/``norm3``/``attn4``/``norm4`` are loaded but never used.
    """

    STAGES = ("attn1", "norm1"), ("attn2", "norm2"), ("attn2", "norm2"), ("attn2", "norm2")

    def __init__(self, c: int, heads: int = RELEASED_ROUTER_HEADS):
        super().__init__()
        if c % heads:
            raise ValueError(f"router hidden size {c} is not divisible by its {heads} attention heads")
        self.query_token = nn.Parameter(torch.randn(1, c) * 0.02)
        for i in range(1, 5):
            self.add_module(f"attn{i}", nn.MultiheadAttention(c, heads, batch_first=True))
            self.add_module(f"norm{i}", nn.LayerNorm(c))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """[N, P, C] (each tile its own sample, as the released flash path batches them) -> [N, C]."""
        x = self.query_token.unsqueeze(0).expand(patches.shape[0], 1, -1)  # [N, 1, C]
        for attn, norm in self.STAGES:
            x, _ = self._modules[attn](x, patches, patches, need_weights=False)  # [N, 1, C]
            x = self._modules[norm](x)
        return x[:, 0, :]  # [N, C]


class ReleasedFlashRouter(nn.Module):
    """The InternVL3.5-Flash router as released: ``pooling_before_gating`` then ``gating``.

    The released gate's column 0 is the compress (64-token) probability: the released forward
    compresses a tile when ``probs[:, 0] > quantile(probs[:, 0], flash_relative_threshold)`` and
    ``probs[:, 0] >= flash_absolute_threshold``. :meth:`released_probs` gives that order;
    :meth:`logits` / :meth:`forward` give ours, ``(keep, compress)``, for everything else here.
    """

    def __init__(self, hidden: int, heads: int = RELEASED_ROUTER_HEADS):
        super().__init__()
        self.num_heads = heads
        self.pooling_before_gating = ReleasedCrossAttentionPooling(hidden, heads)
        self.gating = ReleasedGating(hidden)

    @property
    def query(self) -> nn.Parameter:
        return self.pooling_before_gating.query_token

    def released_logits(self, patches: torch.Tensor) -> torch.Tensor:
        return self.gating.logits(self.pooling_before_gating(patches))  # [N, 2]: (compress, keep)

    def released_probs(self, patches: torch.Tensor) -> torch.Tensor:
        return self.released_logits(patches).softmax(dim=-1)  # [N, 2]: (compress, keep)

    def logits(self, patches: torch.Tensor) -> torch.Tensor:
        return self.released_logits(patches).flip(-1)  # [N, 2]: (keep, compress)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.logits(patches).softmax(dim=-1)  # [N, 2]: (keep, compress)


ROUTER_ARCHS = {"ivl": VisualResolutionRouter, "released": ReleasedFlashRouter}
