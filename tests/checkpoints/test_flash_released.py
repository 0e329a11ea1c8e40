"""Released InternVL3.5-Flash layout (OpenGVLab remote-code format, as LMDeploy serves it).

A tiny random checkpoint is written here the way the remote code's ``InternVLChatModel`` saves
one: its module tree (``vision_model``, ``mlp1``, ``mlp2``, ``pooling_before_gating``,
``gating``, ``language_model``) is rebuilt below from the released structure, its
``state_dict()`` goes to sharded safetensors under those names, and ``config.json`` carries
the released keys (``model_type: internvl_chat``, ``vision_config``, ``llm_config``,
``flash_mode``, ``flash_relative_threshold``, ``flash_absolute_threshold``, ...).

The same reference modules also carry an independent re-implementation of the released
forward (InternViT, pixel shuffle v2, ``extract_feature_flash``, the quantile + absolute
rule of ``generate_flash``), which our loader's routing decisions and embeddings must equal.
Nothing here imports our router, encoder or key map to build the reference.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import Qwen3Config, Qwen3ForCausalLM

TILE, PATCH, C, D, HEADS = 56, 14, 64, 64, 4  # 4x4 patches -> 4 tokens (256-path), 1 token (64-path)


# -- the released modules, rebuilt from the remote code's structure -----------------------------------
class RefAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C, bias=True)  # qkv_bias: true (InternViT-300M)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * (C // HEADS) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, C))


class RefMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(C, 2 * C), nn.Linear(2 * C, C)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class RefLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.mlp = RefAttention(), RefMLP()
        self.norm1, self.norm2 = nn.LayerNorm(C, eps=1e-6), nn.LayerNorm(C, eps=1e-6)  # norm_type: layer_norm
        self.ls1, self.ls2 = nn.Parameter(torch.randn(C)), nn.Parameter(torch.randn(C))

    def forward(self, x):
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


class RefEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.randn(1, 1, C))
        self.patch_embedding = nn.Conv2d(3, C, kernel_size=PATCH, stride=PATCH)
        self.position_embedding = nn.Parameter(torch.randn(1, (TILE // PATCH) ** 2 + 1, C))

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values)  # [B, C, h, w]
        b, _, h, w = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        side = TILE // PATCH
        pos = self.position_embedding[:, 1:, :].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos.float(), size=(h, w), mode="bicubic", align_corners=False)
        pos = torch.cat([self.position_embedding[:, :1, :], pos.reshape(1, -1, h * w).permute(0, 2, 1)], dim=1)
        return torch.cat([self.class_embedding.expand(b, 1, -1), patches], dim=1) + pos


class RefEncoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(RefLayer() for _ in range(layers))


class RefVisionModel(nn.Module):
    def __init__(self, layers=2):
        super().__init__()
        self.embeddings, self.encoder = RefEmbeddings(), RefEncoder(layers)

    def forward(self, pixel_values):
        x = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            x = layer(x)
        return x  # last_hidden_state


class RefPooling(nn.Module):  # CrossAttentionPooling(dim, num_heads=16)
    def __init__(self):
        super().__init__()
        self.query_token = nn.Parameter(torch.randn(1, C))
        for i in range(1, 5):
            setattr(self, f"attn{i}", nn.MultiheadAttention(C, 16, batch_first=True))
            setattr(self, f"norm{i}", nn.LayerNorm(C))

    def forward(self, batched_tokens):  # list of [T_i, C], padded with a key-padding mask
        b, d = len(batched_tokens), batched_tokens[0].shape[-1]
        longest = max(t.shape[0] for t in batched_tokens)
        padded = torch.zeros(b, longest, d, dtype=self.query_token.dtype)
        mask = torch.ones(b, longest, dtype=torch.bool)
        for i, t in enumerate(batched_tokens):
            padded[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = False
        query = self.query_token.unsqueeze(0).expand(b, -1, -1)
        out, _ = self.attn1(query, padded, padded, key_padding_mask=mask)
        out = self.norm1(out)
        for _ in range(3):  # as released: attn2/norm2 three times, attn3/attn4/norm3/norm4 unused
            out, _ = self.attn2(out, padded, padded, key_padding_mask=mask)
            out = self.norm2(out)
        return out.squeeze(1)


def _gate_block():
    return nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Dropout(0.1), nn.Linear(4 * C, C), nn.Dropout(0.1),
                         nn.LayerNorm(C))


class RefGating(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1, self.block2, self.block3, self.block4 = (_gate_block() for _ in range(4))
        self.gate = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, 2))

    def forward(self, x):
        for block in (self.block1, self.block2, self.block3, self.block4):
            x = x + block(x)
        return self.gate(x).softmax(dim=-1)


def ref_pixel_shuffle(x, scale):  # ps_version v2
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale), int(c / scale)).permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3).contiguous()


class RefFlashModel(nn.Module):
    """``InternVLChatModel`` of a Flash checkpoint, tiny, in eval mode."""

    def __init__(self, text: Qwen3Config):
        super().__init__()
        self.vision_model = RefVisionModel()
        self.language_model = Qwen3ForCausalLM(text)
        self.mlp1 = nn.Sequential(nn.LayerNorm(4 * C), nn.Linear(4 * C, D), nn.GELU(), nn.Linear(D, D))
        self.mlp2 = nn.Sequential(nn.LayerNorm(16 * C), nn.Linear(16 * C, 2 * D), nn.GELU(), nn.Dropout(0.1),
                                  nn.Linear(2 * D, 2 * D), nn.GELU(), nn.Dropout(0.1), nn.Linear(2 * D, D))
        self.pooling_before_gating = RefPooling()
        self.gating = RefGating()

    @torch.no_grad()
    def extract_feature_flash(self, pixel_values):
        vit = self.vision_model(pixel_values)[:, 1:, :]
        side = int(vit.shape[1] ** 0.5)
        vit = vit.reshape(vit.shape[0], side, side, -1)
        per_tile = [t.reshape(-1, t.shape[-1]) for t in torch.split(vit, [1] * vit.shape[0], dim=0)]
        gate = self.gating(self.pooling_before_gating(per_tile))
        e64 = ref_pixel_shuffle(vit, 0.25)
        e64 = self.mlp2(e64.reshape(e64.shape[0], -1, e64.shape[-1]))
        e256 = ref_pixel_shuffle(vit, 0.5)
        e256 = self.mlp1(e256.reshape(e256.shape[0], -1, e256.shape[-1]))
        return e64, e256, gate

    def generate_flash_visual(self, pixel_values, relative, absolute):
        """The visual part of ``generate_flash``: per-tile decisions and the selected embeddings."""
        e64, e256, gate = self.extract_feature_flash(pixel_values)
        p = gate[:, 0].to(torch.float32)
        compress = (p > torch.quantile(p, relative)) & (p >= absolute)
        return compress, torch.cat([e64[i] if c else e256[i] for i, c in enumerate(compress.tolist())]), gate


# -- the checkpoint ---------------------------------------------------------------------------------
def _images():
    rng = np.random.RandomState(11)
    shapes = [(90, 200), (130, 250), (120, 60), (100, 100), (60, 170), (140, 140)]
    return [rng.randint(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def _tiles(image, max_tiles=12):
    from ivl_embodied.vision.tiling import TilingConfig, tile_image

    return tile_image(image, TilingConfig(tile_size=TILE, max_tiles=max_tiles))


def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("language_model."):
                continue
            scale = 0.5 if p.dim() < 2 else 1.0 / p.shape[-1] ** 0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if "norm" in name and p.dim() == 1
                                                                  and name.endswith("weight") else 0.0))


def _config(text: Qwen3Config, relative: float, absolute: float) -> dict:
    llm = text.to_dict()
    llm["architectures"] = ["Qwen3ForCausalLM"]
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "model_type": "internvl_chat",
        "torch_dtype": "float32",
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": TILE, "max_dynamic_patch": 12,
        "min_dynamic_patch": 1, "pad2square": False, "ps_version": "v2", "select_layer": -1,
        "template": "internvl2_5", "use_backbone_lora": 0, "use_llm_lora": 0, "use_thumbnail": True,
        "flash_mode": True, "flash_relative_threshold": relative, "flash_absolute_threshold": absolute,
        "vision_config": {
            "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": C,
            "num_hidden_layers": 2, "num_attention_heads": HEADS, "intermediate_size": 2 * C, "image_size": TILE,
            "patch_size": PATCH, "num_channels": 3, "qkv_bias": True, "qk_normalization": False,
            "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu", "dropout": 0.0,
            "drop_path_rate": 0.0, "attention_dropout": 0.0, "initializer_range": 0.02,
            "initializer_factor": 0.1, "use_flash_attn": False,
        },
        "llm_config": llm,
    }


def _write_shards(state: dict[str, torch.Tensor], out) -> None:
    """Two shards + index, as ``save_pretrained`` writes a sharded checkpoint."""
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for fname, ks in shards.items():
        save_file({k: state[k].contiguous() for k in ks}, str(out / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(ks, fname))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def released_ckpt(tmp_path_factory):
    """(dir, reference model, relative, absolute): a tiny random Flash checkpoint in the released layout."""
    from ivl_embodied.checkpoints.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    text = Qwen3Config(vocab_size=len(tokenizer), hidden_size=D, intermediate_size=2 * D, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=D // 4, max_position_embeddings=4096,
                       tie_word_embeddings=True)
    torch.manual_seed(5)
    ref = RefFlashModel(text).eval()
    _randomise(ref, seed=6)
    # thresholds the checkpoint ships with: a relative quantile and an absolute floor that both bite
    relative = 0.25
    gates = torch.cat([ref.extract_feature_flash(_tiles(im).pixel_values)[2][:, 0] for im in _images()])
    absolute = round(float(torch.quantile(gates, 0.45)), 4)

    out = tmp_path_factory.mktemp("released") / "InternVL3_5-tiny-Flash"
    out.mkdir()
    state = dict(ref.state_dict())
    assert torch.equal(state["language_model.lm_head.weight"], state["language_model.model.embed_tokens.weight"])
    del state["language_model.lm_head.weight"]  # tied: save_pretrained keeps one copy
    _write_shards(state, out)
    (out / "config.json").write_text(json.dumps(_config(text, relative, absolute), indent=2))
    tokenizer.save_pretrained(str(out))
    return out, ref, relative, absolute


def _keys(ckpt) -> list[str]:
    keys = []
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            keys += list(sf.keys())
    return keys


# -- tests --------------------------------------------------------------------------------------------
def test_released_layout_names_are_the_issue_s(released_ckpt):
    ckpt, *_ = released_ckpt
    keys = set(_keys(ckpt))
    assert {k.rsplit(".", 1)[0] for k in keys if k.startswith("mlp2.")} == {"mlp2.0", "mlp2.1", "mlp2.4", "mlp2.7"}
    pooling = {k.split(".")[1] for k in keys if k.startswith("pooling_before_gating.")}
    assert pooling == {"query_token"} | {f"{m}{i}" for m in ("attn", "norm") for i in range(1, 5)}
    gating = {".".join(k.split(".")[1:3]) for k in keys if k.startswith("gating.")}
    assert gating == {f"block{i}.{j}" for i in range(1, 5) for j in (0, 3, 5)} | {"gate.0", "gate.1"}
    assert "vision_model.encoder.layers.0.attn.qkv.weight" in keys and "mlp1.3.weight" in keys


def test_released_flash_checkpoint_loads_strictly(released_ckpt):
    from ivl_embodied.checkpoints import released
    from ivl_embodied.checkpoints.internvl import checkpoint_kind, full_layout, load_vision
    from ivl_embodied.vision.vir import ReleasedFlashRouter, ViRPolicy

    ckpt, ref, relative, absolute = released_ckpt
    assert checkpoint_kind(ckpt) == "internvl" and full_layout(ckpt) == "released"
    enc = load_vision(ckpt)  # strict: raises on any missing or unexpected tensor
    c = enc.config
    assert c.with_vir and c.router_arch == "released" and isinstance(enc.vision_router, ReleasedFlashRouter)
    assert c.vir_policy == ViRPolicy("auto", relative=relative, absolute=absolute, single_tile="quantile")
    assert (c.tile_size, c.tokens_full, c.tokens_compressed, c.text_hidden_size) == (TILE, 4, 1, D)
    # no missing and no unexpected keys, both ways: our state maps back onto exactly the written names
    written = {k for k in _keys(ckpt) if not k.startswith("language_model.")}
    back = released.vision_state_to_released(enc.state_dict())
    assert set(back) == written
    ref_state = ref.state_dict()
    for k in written:
        assert torch.equal(back[k], ref_state[k]), k


def test_routing_equals_the_released_forward(released_ckpt):
    from ivl_embodied.checkpoints.internvl import load_vision

    ckpt, ref, relative, absolute = released_ckpt
    enc = load_vision(ckpt)
    policy = enc.config.vir_policy
    decisions, mixed, single = [], 0, 0
    requests = [_tiles(im) for im in _images()] + [_tiles(im, max_tiles=1) for im in _images()[:3]]
    for tiles in requests:
        want, want_emb, want_gate = ref.generate_flash_visual(tiles.pixel_values, relative, absolute)
        got = enc.encode(tiles, policy)
        assert got.tokens_per_tile == tuple(1 if c else 4 for c in want.tolist()), tiles.num_tiles
        torch.testing.assert_close(got.embeddings, want_emb, rtol=0, atol=1e-5)
        with torch.no_grad():
            grid = enc.vit_features(tiles.pixel_values)
            gate = enc.vision_router.released_probs(grid.reshape(grid.shape[0], -1, C))
        torch.testing.assert_close(gate, want_gate, rtol=0, atol=1e-6)
        decisions += want.tolist()
        mixed += 0 < int(want.sum()) < tiles.num_tiles
        single += tiles.num_tiles == 1  # one tile: never above its own quantile, so never compressed
    assert any(decisions) and not all(decisions) and mixed >= 2 and single == 3, decisions  # a real mix


@pytest.mark.parametrize("relative,absolute", [(0.0, 0.0), (0.5, 0.0), (0.1, 0.5), (0.7, 0.3), (1.0, 0.0)])
def test_routing_equals_the_released_rule_at_other_thresholds(released_ckpt, relative, absolute):
    from ivl_embodied.checkpoints.internvl import load_vision
    from ivl_embodied.vision.vir import ViRPolicy

    ckpt, ref, *_ = released_ckpt
    enc = load_vision(ckpt)
    policy = ViRPolicy("auto", relative=relative, absolute=absolute, single_tile="quantile")
    for image in _images()[:3]:
        tiles = _tiles(image)
        want, *_ = ref.generate_flash_visual(tiles.pixel_values, relative, absolute)
        assert enc.encode(tiles, policy).tokens_per_tile == tuple(1 if c else 4 for c in want.tolist())


def test_released_language_side_matches_the_reference(released_ckpt):
    from ivl_embodied.checkpoints.internvl import load_language

    ckpt, ref, *_ = released_ckpt
    planner = load_language(ckpt)
    ids = torch.tensor([[1, 7, 42, 99, 3, 250]])
    with torch.no_grad():
        want = ref.language_model(input_ids=ids).logits
        got = planner.lm(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert planner.image_token_id == planner.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")


def test_split_of_a_released_checkpoint_keeps_router_and_policy(released_ckpt, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_vision, split_checkpoint

    ckpt, *_ = released_ckpt
    v, _ = split_checkpoint(ckpt, tmp_path / "v", tmp_path / "l")
    a, b = load_vision(ckpt), load_vision(v)
    assert b.config.router_arch == "released" and b.config.vir_policy == a.config.vir_policy
    tiles = _tiles(_images()[0])
    ea, eb = a.encode(tiles, a.config.vir_policy), b.encode(tiles, b.config.vir_policy)
    assert ea.tokens_per_tile == eb.tokens_per_tile and torch.equal(ea.embeddings, eb.embeddings)


def _rewrite(src, dst, drop=(), add=None, config=None):
    """Copy a released checkpoint, dropping/adding tensors or patching config.json."""
    shutil.copytree(src, dst)
    for f in sorted(dst.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            state = {k: sf.get_tensor(k) for k in sf.keys() if k not in drop}
        if add and f.name.startswith("model-00001"):
            state.update(add)
        save_file(state, str(f), metadata={"format": "pt"})
    if config:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("drop,add,name", [
    (("pooling_before_gating.attn3.in_proj_weight",), None, "pooling_before_gating.attn3.in_proj_weight"),
    (("mlp2.7.bias",), None, "mlp2.7.bias"),
    (("vision_model.encoder.layers.1.attn.qkv.weight",), None, "vision_model.encoder.layers.1.attn.qkv.weight"),
    ((), {"gating.block5.0.weight": torch.zeros(4 * C, C)}, "gating.block5.0.weight"),
    ((), {"mlp2.2.weight": torch.zeros(2 * D, 2 * D)}, "mlp2.2.weight"),
    ((), {"vision_model.encoder.layers.2.ls1": torch.zeros(C)}, "vision_model.encoder.layers.2.ls1"),
])
def test_malformed_released_checkpoint_names_the_key(released_ckpt, tmp_path, drop, add, name):
    from ivl_embodied.checkpoints.internvl import load_vision

    bad = _rewrite(released_ckpt[0], tmp_path / "bad", drop=drop, add=add)
    kind = "missing" if drop else "unexpected"
    with pytest.raises(ValueError, match=rf"{kind} \[[^\]]*{name.replace('.', '[.]')}"):
        load_vision(bad)


def test_malformed_released_language_and_config_are_refused(released_ckpt, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_language, load_vision

    src = released_ckpt[0]
    bad = _rewrite(src, tmp_path / "lang", add={"language_model.extra.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="language_model.extra.weight"):
        load_language(bad)
    bad = _rewrite(src, tmp_path / "lm", drop=("language_model.model.norm.weight",))
    with pytest.raises(ValueError, match="model.norm.weight"):
        load_language(bad)
    # config and weights disagree: qkv_bias false, yet the checkpoint has attn.qkv.bias
    cfg = json.loads((src / "config.json").read_text())
    bad = _rewrite(src, tmp_path / "bias", config={"vision_config": dict(cfg["vision_config"], qkv_bias=False)})
    with pytest.raises(ValueError, match=r"unexpected \[vision_model.encoder.layers.0.attn.qkv.bias"):
        load_vision(bad)
    wide = dict(cfg["vision_config"], intermediate_size=3 * C)
    bad = _rewrite(src, tmp_path / "wide", config={"vision_config": wide})
    with pytest.raises(ValueError, match=r"shapes do not fit the config: \[vision_model.encoder.layers.0.mlp.fc1.bias "
                                         r"\(128,\) \(expected \(192,\)\)"):
        load_vision(bad)
    bad = _rewrite(src, tmp_path / "thr", config={"flash_relative_threshold": 1.5})
    with pytest.raises(ValueError, match="flash_relative_threshold=1.5"):
        load_vision(bad)
    bad = _rewrite(src, tmp_path / "ps", config={"ps_version": "v1"})
    with pytest.raises(ValueError, match="ps_version='v1'"):
        load_vision(bad)
    router = [k for k in _keys(src) if k.startswith(("mlp2.", "pooling_before_gating.", "gating."))]
    bad = _rewrite(src, tmp_path / "noflash", drop=router)  # flash_mode: true, but no router tensors
    with pytest.raises(ValueError, match=r"missing \[gating.block1.0.bias"):
        load_vision(bad)


def test_released_without_flash_tensors_is_a_plain_encoder(released_ckpt, tmp_path):
    from ivl_embodied.checkpoints.internvl import load_vision

    src = released_ckpt[0]
    router = [k for k in _keys(src) if k.startswith(("mlp2.", "pooling_before_gating.", "gating."))]
    plain = _rewrite(src, tmp_path / "plain", drop=router, config={"flash_mode": False})
    enc = load_vision(plain)
    assert not enc.config.with_vir and enc.config.vir_policy is None
    emb = enc.encode(_tiles(_images()[0]))
    assert set(emb.tokens_per_tile) == {4}


def test_flash_config_map():
    from ivl_embodied.checkpoints.released import vir_policy
    from ivl_embodied.vision.vir import ViRPolicy

    assert vir_policy({}) is None
    assert vir_policy({"flash_mode": False}) == ViRPolicy("full")
    got = vir_policy({"flash_mode": True, "flash_relative_threshold": 0.3, "flash_absolute_threshold": 0.6})
    assert got == ViRPolicy("auto", relative=0.3, absolute=0.6, single_tile="quantile")
    with pytest.raises(ValueError, match="no 'flash_absolute_threshold'"):
        vir_policy({"flash_mode": True, "flash_relative_threshold": 0.3})
    with pytest.raises(ValueError, match="flash_absolute_threshold='x' is not a number"):
        vir_policy({"flash_mode": True, "flash_relative_threshold": 0.3, "flash_absolute_threshold": "x"})


def test_our_flash_layout_still_loads(tiny_flash_ckpt):
    from ivl_embodied.checkpoints.internvl import full_layout, load_vision
    from ivl_embodied.vision.vir import VisualResolutionRouter

    assert full_layout(tiny_flash_ckpt) == "hf"
    enc = load_vision(tiny_flash_ckpt)
    assert enc.config.router_arch == "ivl" and isinstance(enc.vision_router, VisualResolutionRouter)
    assert enc.config.vir_policy is None


def test_inspect_cli_reports_the_released_layout(released_ckpt, capsys):
    import argparse

    from ivl_embodied.checkpoints import cli as checkpoint_cli

    ckpt, _, relative, absolute = released_ckpt
    parser = argparse.ArgumentParser()
    checkpoint_cli.add_arguments(parser)
    assert checkpoint_cli.run(parser.parse_args(["inspect", str(ckpt)])) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "internvl" and info["layout"] == "released"
    assert info["vision"]["router"] == "released" and info["vision"]["vir_policy"] == {
        "mode": "auto", "relative": relative, "absolute": absolute, "single_tile": "quantile"}
    assert info["language"]["class"] == "Qwen3ForCausalLM" and info["language"]["hidden_size"] == D
