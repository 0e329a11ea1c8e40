"""The InternVL3.5-Flash router as released: names, the forward's quirks, column order, the one-tile rule."""

from __future__ import annotations

import pytest
import torch

from ivl_embodied.vision.vir import ReleasedFlashRouter, ViRPolicy, VisualResolutionRouter, route_tiles


def _router(seed=0, c=32):
    torch.manual_seed(seed)
    router = ReleasedFlashRouter(c).eval()
    with torch.no_grad():  # LayerNorms away from identity, so a wrong norm would show
        for name, p in router.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    return router


def test_parameter_names_and_shapes_are_the_released_ones():
    c = 32
    shapes = {k: tuple(v.shape) for k, v in ReleasedFlashRouter(c).state_dict().items()}
    want = {"pooling_before_gating.query_token": (1, c)}
    for i in range(1, 5):
        want |= {f"pooling_before_gating.attn{i}.in_proj_weight": (3 * c, c),
                 f"pooling_before_gating.attn{i}.in_proj_bias": (3 * c,),
                 f"pooling_before_gating.attn{i}.out_proj.weight": (c, c),
                 f"pooling_before_gating.attn{i}.out_proj.bias": (c,),
                 f"pooling_before_gating.norm{i}.weight": (c,), f"pooling_before_gating.norm{i}.bias": (c,),
                 f"gating.block{i}.0.weight": (4 * c, c), f"gating.block{i}.0.bias": (4 * c,),
                 f"gating.block{i}.3.weight": (c, 4 * c), f"gating.block{i}.3.bias": (c,),
                 f"gating.block{i}.5.weight": (c,), f"gating.block{i}.5.bias": (c,)}
    want |= {"gating.gate.0.weight": (c,), "gating.gate.0.bias": (c,), "gating.gate.1.weight": (2, c),
             "gating.gate.1.bias": (2,)}
    assert shapes == want
    assert ReleasedFlashRouter(c).pooling_before_gating.attn1.num_heads == 16
    with pytest.raises(ValueError, match="not divisible by its 16"):
        ReleasedFlashRouter(40)


def test_forward_uses_attn2_three_times_and_never_attn3_attn4():
    router = _router()
    x = torch.randn(5, 16, 32)
    with torch.no_grad():
        base = router.released_probs(x)
        for name in ("attn3", "norm3", "attn4", "norm4"):
            for p in getattr(router.pooling_before_gating, name).parameters():
                p.add_(1.0)
        assert torch.equal(router.released_probs(x), base)  # loaded, never used
        for p in router.pooling_before_gating.attn2.parameters():
            p.mul_(1.5)
        assert not torch.allclose(router.released_probs(x), base)


def test_column_order_ours_is_keep_compress_released_is_compress_keep():
    router = _router(1)
    x = torch.randn(4, 16, 32)
    with torch.no_grad():
        released, ours = router.released_probs(x), router(x)
    torch.testing.assert_close(ours, released.flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(ours.sum(-1), torch.ones(4))
    assert router.query is router.pooling_before_gating.query_token  # what router training reads
    assert router.logits(x).shape == (4, 2)
    assert isinstance(VisualResolutionRouter(32), torch.nn.Module)


def test_single_tile_rule():
    one = torch.tensor([0.9])
    assert route_tiles(one, ViRPolicy("auto")).tolist() == [True]  # ours: the router's own decision
    assert route_tiles(one, ViRPolicy("auto", single_tile="quantile")).tolist() == [False]  # as released
    p = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    assert route_tiles(p, ViRPolicy("auto", 0.5, single_tile="quantile")).tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="'sometimes'"):
        ViRPolicy(single_tile="sometimes")
