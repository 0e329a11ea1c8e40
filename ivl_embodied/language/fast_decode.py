"""A lean Qwen3 decoder for planning: a static KV cache and one fused step per token.

transformers' ``generate`` spends most of a small model's decoding step in Python (cache objects,
masks, module hooks, kwargs) and, at Qwen3-0.6B shapes on a CPU, reads every fp32 weight once per
token. :class:`StaticDecoder` runs the same network from the same weights with

* a KV cache allocated once (``[layers, kv_heads, max_len, head_dim]``) and written in place;
* q/k/v and gate/up fused into one matrix each (when the copies are small: ``FUSE_MAX_BYTES``; larger
  models' matrices are used in place), q and k heads normed and rotated together (RoPE from a table),
  attention of the one new query against the cache as two matmuls (grouped-query heads as a batch);
* optionally int8 weights (``weights="int8"``: per-output-channel symmetric int8, activations
  quantized per call on the fly, fbgemm's ``quantized::linear_dynamic``), a quarter of the fp32 bytes
  to read per token. CPU only; its tokens are not those of fp32 weights bit for bit, so it is a
  choice (the planner node's ``decoder: static-int8``), never the default.

With ``weights="model"`` (the default) it computes what transformers computes, up to the order of
floating-point sums: tests check greedy tokens equal to transformers' ``generate`` on the shipped
planner and on random configs. Only what Qwen3 planners use is supported (default RoPE, full
attention, no biases, SiLU); anything else raises naming the setting.

The decoder may hold copies of the weights (fused or int8): :meth:`StaticDecoder.stale` tells when the
model's parameters were changed in place since (training between rollouts), and the planner rebuilds it.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = ("model", "int8")


def _version(lm: nn.Module) -> int:
    """Sum of the parameters' in-place modification counters: changes when an optimizer steps."""
    return sum(p._version for p in lm.parameters())


def _rope_parameters(cfg) -> dict:
    """``rope_parameters`` of a transformers 5 config, or the older ``rope_theta`` as one."""
    return getattr(cfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": cfg.rope_theta}


def check_supported(cfg, weights: str = "model", device: torch.device | str = "cpu") -> None:
    """Raise ``ValueError`` naming the first setting the static decoder does not implement: of the model's
    config ``cfg``, of ``weights``, or int8 weights on a device other than the CPU."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if weights == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"int8 weights run on the CPU only, the model is on {device}")
    rope = _rope_parameters(cfg)
    sliding = getattr(cfg, "use_sliding_window", False)
    checks = [
        ("model_type", cfg.model_type, cfg.model_type == "qwen3"),
        ("rope_type", rope.get("rope_type"), rope.get("rope_type", "default") == "default"),
        ("attention_bias", cfg.attention_bias, not cfg.attention_bias),
        ("hidden_act", cfg.hidden_act, cfg.hidden_act == "silu"),
        ("use_sliding_window", sliding, not sliding),
    ]
    for name, value, ok in checks:
        if not ok:
            raise ValueError(f"the static decoder does not support {name}={value!r}; use decoder='hf'")


FUSE_MAX_BYTES = 64 << 20  # fp32/bf16 weights are fused (copied) only when the copies take at most this much


class _Int8Linear:
    """``y = x W^T`` with W (the row-wise concatenation of ``ws``) as per-output-channel int8 (fbgemm
    dynamic quantization, CPU)."""

    def __init__(self, ws: list[torch.Tensor]):
        w = torch.cat([w.detach().float().cpu() for w in ws])
        self.nbytes = w.numel() + 8 * w.shape[0]  # int8 values + a float64 scale per row
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()  # [out]
        with warnings.catch_warnings():  # quantized tensors are deprecated upstream; torch is pinned (2.13)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            q = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(q, None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self.packed, False).to(x.dtype)


class Int8Linear(nn.Module):
    """An ``nn.Linear`` (no bias) with the static decoder's int8 weights: put in place of a model's linears by
    :func:`int8_model`, it gives transformers' own forward and ``generate`` the same arithmetic."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear takes linears without bias")
        self.impl = _Int8Linear([linear.weight])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.impl(x)


def int8_model(lm: nn.Module) -> nn.Module:
    """A copy of ``lm`` whose decoder and output linears are :class:`Int8Linear`: the reference the int8 static
    decoder is checked against (same tokens as transformers' ``generate`` on it) and benchmarked beside."""
    import copy

    q = copy.deepcopy(lm)
    q.config.tie_word_embeddings = False  # the output layer becomes its own (int8) module
    for module in list(q.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    return q


class _Linear:
    """``y = x [W1; W2; ...]^T``: one fused copy of the matrices, or the model's own tensors (no copy)."""

    def __init__(self, ws: list[torch.Tensor], fuse: bool):
        copy = fuse and len(ws) > 1
        self.ws = [torch.cat([w.detach() for w in ws])] if copy else [w.detach() for w in ws]
        self.nbytes = sum(w.numel() * w.element_size() for w in self.ws) if copy else 0  # memory beyond the model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.ws) == 1:
            return F.linear(x, self.ws[0])
        return torch.cat([F.linear(x, w) for w in self.ws], dim=-1)


class StaticDecoder:
    """Prefill a prompt's embeddings, then decode one token per :meth:`step`, from a static cache.

    >>> dec = StaticDecoder(lm)
    >>> dec.reserve(prompt_len + max_new_tokens)
    >>> logits = dec.prefill(inputs_embeds)   # [V] for the last prompt position
    >>> logits = dec.step(token_id, lm.get_input_embeddings())   # [V] after appending token_id
    """

    def __init__(self, lm: nn.Module, max_len: int | None = None, weights: str = "model"):
        cfg = lm.config
        emb = lm.get_input_embeddings().weight
        self.device, self.dtype = emb.device, emb.dtype
        check_supported(cfg, weights, self.device)
        self.version = _version(lm)
        self.max_positions = int(cfg.max_position_embeddings)
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = float(cfg.rms_norm_eps)
        self.scale = self.head_dim ** -0.5
        fused_bytes = sum(p.numel() * p.element_size() for n, p in lm.named_parameters()
                          if n.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight",
                                         "up_proj.weight")))
        self.fused = weights == "int8" or fused_bytes <= FUSE_MAX_BYTES

        def linear(*ws: torch.Tensor):
            return _Int8Linear(list(ws)) if weights == "int8" else _Linear(list(ws), self.fused)

        self.layers = []
        with torch.no_grad():
            for layer in lm.model.layers:
                a, m = layer.self_attn, layer.mlp
                self.layers.append({
                    "in_norm": layer.input_layernorm.weight.detach(),
                    "post_norm": layer.post_attention_layernorm.weight.detach(),
                    # q and k heads are normed and rotated together: one weight row per head
                    "qk_norm": torch.cat([a.q_norm.weight.detach().expand(self.heads, -1),
                                          a.k_norm.weight.detach().expand(self.kv_heads, -1)]),  # [H+K, d]
                    "qkv": linear(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight),
                    "o": linear(a.o_proj.weight),
                    "gate_up": linear(m.gate_proj.weight, m.up_proj.weight),
                    "down": linear(m.down_proj.weight),
                })
            self.norm = lm.model.norm.weight.detach()
            self.lm_head = linear(lm.get_output_embeddings().weight)
            self.inv_freq = 1.0 / (float(_rope_parameters(cfg)["rope_theta"]) ** (
                torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.max_len, self.pos = 0, 0
        self.reserve(max_len or 256)
        self.q_size, self.kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim

    def reserve(self, n: int) -> None:
        """Make room for sequences of ``n`` positions (grows the cache and the RoPE table; never shrinks)."""
        if n > self.max_positions:
            raise ValueError(f"a sequence of {n} positions exceeds the model's max_position_embeddings "
                             f"({self.max_positions})")
        if n <= self.max_len:
            return
        n = min(self.max_positions, max(n, 2 * self.max_len))
        freqs = torch.outer(torch.arange(n, dtype=torch.float32), self.inv_freq)  # [n, hd/2]
        angles = torch.cat([freqs, freqs], dim=-1)  # [n, hd]
        # rotate_half(x) * sin == roll(x, hd/2) * (sin with its first half negated)
        sign = torch.cat([-torch.ones(self.head_dim // 2), torch.ones(self.head_dim // 2)])
        self.cos = angles.cos().to(self.device, self.dtype)
        self.sin = (angles.sin() * sign).to(self.device, self.dtype)
        shape = (len(self.layers), self.kv_heads, n, self.head_dim)
        k = torch.zeros(shape, device=self.device, dtype=self.dtype)
        v = torch.zeros_like(k)
        if self.max_len:  # keep what is cached
            k[:, :, :self.max_len], v[:, :, :self.max_len] = self.k, self.v
        self.k, self.v, self.max_len = k, v, n

    def nbytes(self) -> dict[str, int]:
        """Memory the decoder holds beyond the model: its weights (int8 ones, or fused copies) and its cache."""
        linears = [L[k] for L in self.layers for k in ("qkv", "o", "gate_up", "down")] + [self.lm_head]
        return {"weights": sum(lin.nbytes for lin in linears),
                "kv_cache": 2 * self.k.numel() * self.k.element_size()}

    def stale(self, lm: nn.Module) -> bool:
        """True when ``lm``'s parameters changed in place, or moved, after this decoder took them."""
        emb = lm.get_input_embeddings().weight
        return _version(lm) != self.version or (emb.device, emb.dtype) != (self.device, self.dtype)

    def _norm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """RMSNorm over the last dimension, as transformers' Qwen3RMSNorm (in fewer dispatches than torch.rms_norm)."""
        x32 = x.float()  # the same tensor when x is fp32
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True).add_(self.eps))).to(x.dtype) * w

    def _forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` [T, hidden] at positions pos..pos+T-1 → logits [V] of the last position; fills the cache."""
        t, start = h.shape[0], self.pos
        end = start + t
        self.reserve(end)
        cos, sin = self.cos[start:end, None], self.sin[start:end, None]  # [T, 1, hd]
        d, heads, groups, half = self.head_dim, self.heads, self.heads // self.kv_heads, self.head_dim // 2
        for i, L in enumerate(self.layers):
            qkv = L["qkv"](self._norm(h, L["in_norm"]))  # [T, (H + 2K) d]
            qk = self._norm(qkv[:, :self.q_size + self.kv_size].view(t, -1, d), L["qk_norm"])  # [T, H+K, d]
            qk = torch.addcmul(qk * cos, qk.roll(half, -1), sin)  # RoPE
            self.k[i, :, start:end] = qk[:, heads:].transpose(0, 1)
            self.v[i, :, start:end] = qkv[:, self.q_size + self.kv_size:].view(t, -1, d).transpose(0, 1)
            keys, values = self.k[i, :, :end], self.v[i, :, :end]  # [K, end, d]
            if t == 1:  # one query: the grouped heads of a kv head are a batch of rows
                scores = torch.bmm(qk[0, :heads].view(self.kv_heads, groups, d), keys.transpose(1, 2))
                w = torch.softmax(scores.mul_(self.scale), dim=-1, dtype=torch.float32).to(self.dtype)
                attn = torch.bmm(w, values).view(1, self.q_size)
            else:
                attn = F.scaled_dot_product_attention(
                    qk[:, :heads].transpose(0, 1)[None], keys[None], values[None], scale=self.scale,
                    attn_mask=self._prefill_mask(start, t), enable_gqa=True)[0].transpose(0, 1).reshape(t, -1)
            h = h + L["o"](attn)
            gate, up = L["gate_up"](self._norm(h, L["post_norm"])).chunk(2, dim=-1)
            h = h + L["down"](F.silu(gate).mul_(up))
        self.pos = end
        return self.lm_head(self._norm(h[-1:], self.norm))[0]

    def _prefill_mask(self, start: int, t: int) -> torch.Tensor:
        """[T, start+T] boolean: query i sees every cached position and the new ones up to itself."""
        cols = torch.arange(start + t, device=self.device)
        return cols[None, :] <= (start + torch.arange(t, device=self.device))[:, None]

    @torch.no_grad()
    def prefill(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Start a new sequence from ``inputs_embeds`` [1, T, hidden] (or [T, hidden]); logits [V]."""
        h = inputs_embeds[0] if inputs_embeds.ndim == 3 else inputs_embeds
        self.pos = 0
        return self._forward(h.to(self.dtype))

    @torch.no_grad()
    def step(self, token_id: int, embedding: nn.Embedding) -> torch.Tensor:
        """Append ``token_id`` (embedded with the model's own ``embedding``); logits [V] after it."""
        return self._forward(embedding.weight[token_id][None].to(self.dtype))
