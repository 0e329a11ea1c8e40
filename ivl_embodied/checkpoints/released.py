"""The released InternVL3.5(-Flash) layout: OpenGVLab's remote-code checkpoints, read without their code.

The ``OpenGVLab/InternVL3_5-*-Flash`` checkpoints are saved from the remote-code class
``InternVLChatModel`` (``config.json``: ``model_type: internvl_chat``); LMDeploy's PyTorch
backend serves them when the config has ``flash_mode``. We never run their code
(``trust_remote_code`` stays off): this module maps their config keys and tensor names onto
our :class:`~ivl_embodied.vision.encoder.VisionEncoder` and a transformers causal LM.

Tensor names, released -> ours (vision side; ``language_model.*`` is the LM, see
:mod:`.internvl`):

* ``vision_model.embeddings.{class_embedding, patch_embedding.*, position_embedding}`` ->
  ``vision_tower.embeddings.{cls_token, patch_embeddings.projection.*, position_embeddings}``
* ``vision_model.encoder.layers.{i}.attn.qkv.*`` -> ``vision_tower.encoder.layer.{i}.attention.{q,k,v}_proj.*``
  (rows split in thirds: q, k, v)
* ``... .attn.proj.*``, ``.attn.{q,k}_norm.*``, ``.norm1.*``, ``.norm2.*``, ``.ls1``, ``.ls2``, ``.mlp.fc{1,2}.*``
  -> ``... .attention.projection_layer.*``, ``.attention.{q,k}_norm.*``, ``.layernorm_before.*``,
  ``.layernorm_after.*``, ``.lambda_1``, ``.lambda_2``, ``.mlp.fc{1,2}.*``
* ``mlp1.{0,1,3}.*`` -> ``multi_modal_projector.{layer_norm,linear_1,linear_2}.*``
* ``mlp2.{0,1,4,7}.*`` -> ``mlp2.{layer_norm,linear_1,linear_2,linear_3}.*``
* ``pooling_before_gating.*``, ``gating.*`` -> ``vision_router.pooling_before_gating.*``, ``vision_router.gating.*``

(The ViT renames are transformers' own InternVL conversion; the sparse indices of ``mlp1``,
``mlp2`` and ``gating.block*`` are the ``nn.Sequential`` slots of the released modules, whose
GELU/Dropout layers hold no tensors.) The router is :class:`~ivl_embodied.vision.vir.ReleasedFlashRouter`.

Config keys, released -> ours: ``vision_config`` (``InternVisionConfig``: ``qkv_bias`` ->
``attention_bias``, ``qk_normalization`` -> ``use_qk_norm``, ``norm_type``, ...) ->
``InternVLVisionConfig``; ``llm_config`` -> the LM's transformers config; ``downsample_ratio``
(0.5), ``select_layer`` (-1), ``ps_version`` (``v2``) and ``force_image_size`` are checked;
``flash_mode`` / ``flash_relative_threshold`` / ``flash_absolute_threshold`` ->
:class:`~ivl_embodied.vision.vir.ViRPolicy` ``("auto", relative, absolute, single_tile="quantile")``
(``flash_mode`` false: ``ViRPolicy("full")``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from transformers import AutoConfig, InternVLVisionConfig, PretrainedConfig

from ivl_embodied.vision.encoder import VisionEncoderConfig
from ivl_embodied.vision.vir import RELEASED_ROUTER_HEADS, ViRPolicy

RELEASED_MODEL_TYPE = "internvl_chat"
LANGUAGE_PREFIX = "language_model."
VIR_PREFIXES = ("mlp2.", "pooling_before_gating.", "gating.")
FLASH_KEYS = ("flash_mode", "flash_relative_threshold", "flash_absolute_threshold")

# -- tensor names -------------------------------------------------------------------------------
_FIELDS = {"i": r"\d+", "p": r"weight|bias", "n": r"q_norm|k_norm", "fc": r"fc1|fc2", "ls": r"[12]",
           "rest": r".+", "qkv": r"[qkv]"}
_VL, _OL = "vision_model.encoder.layers.{i}.", "vision_tower.encoder.layer.{i}."
_PAIRS = (  # (released template, our template); each {field} at most once per template
    ("vision_model.embeddings.class_embedding", "vision_tower.embeddings.cls_token"),
    ("vision_model.embeddings.patch_embedding.{p}", "vision_tower.embeddings.patch_embeddings.projection.{p}"),
    ("vision_model.embeddings.position_embedding", "vision_tower.embeddings.position_embeddings"),
    (_VL + "attn.proj.{p}", _OL + "attention.projection_layer.{p}"),
    (_VL + "attn.{n}.weight", _OL + "attention.{n}.weight"),
    (_VL + "norm1.{p}", _OL + "layernorm_before.{p}"),
    (_VL + "norm2.{p}", _OL + "layernorm_after.{p}"),
    (_VL + "ls{ls}", _OL + "lambda_{ls}"),
    (_VL + "mlp.{fc}.{p}", _OL + "mlp.{fc}.{p}"),
    ("mlp1.0.{p}", "multi_modal_projector.layer_norm.{p}"),
    ("mlp1.1.{p}", "multi_modal_projector.linear_1.{p}"),
    ("mlp1.3.{p}", "multi_modal_projector.linear_2.{p}"),
    ("mlp2.0.{p}", "mlp2.layer_norm.{p}"),
    ("mlp2.1.{p}", "mlp2.linear_1.{p}"),
    ("mlp2.4.{p}", "mlp2.linear_2.{p}"),
    ("mlp2.7.{p}", "mlp2.linear_3.{p}"),
    ("pooling_before_gating.{rest}", "vision_router.pooling_before_gating.{rest}"),
    ("gating.{rest}", "vision_router.gating.{rest}"),
)
_QKV = (_VL + "attn.qkv.{p}", _OL + "attention.{qkv}_proj.{p}")  # one released tensor <-> three of ours


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, field, literal, ...
    return re.compile("".join(re.escape(x) if k % 2 == 0 else f"(?P<{x}>{_FIELDS[x]})" for k, x in enumerate(parts)))


_TO_OURS = [(_pattern(a), b) for a, b in _PAIRS]
_TO_RELEASED = [(_pattern(b), a) for a, b in _PAIRS]
_QKV_RELEASED, _QKV_OURS = _pattern(_QKV[0]), _pattern(_QKV[1])


def our_names(released: str) -> list[str]:
    """Our tensor name(s) for a released vision-side name ([] when it has none)."""
    if m := _QKV_RELEASED.fullmatch(released):
        return [_QKV[1].format(qkv=x, **m.groupdict()) for x in "qkv"]
    for pat, ours in _TO_OURS:
        if m := pat.fullmatch(released):
            return [ours.format(**m.groupdict())]
    return []


def released_name(ours: str) -> str | None:
    """The released name that holds one of our vision-side tensors (``None`` when none does)."""
    if m := _QKV_OURS.fullmatch(ours):
        return _QKV[0].format(**{k: v for k, v in m.groupdict().items() if k != "qkv"})
    for pat, released in _TO_RELEASED:
        if m := pat.fullmatch(ours):
            return released.format(**m.groupdict())
    return None


def _listing(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(set(keys))
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"[{', '.join(keys[:limit])}]{more}"


def vision_state_to_ours(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Released vision-side tensors -> our state dict, strictly.

    ``expected`` is the state dict of the encoder being loaded. Raises ``ValueError`` naming, in
    the released names, every tensor the checkpoint lacks, every tensor it has that fits
    nowhere, and every tensor whose shape differs from the encoder's.
    """
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for name, tensor in tensors.items():
        ours = our_names(name)
        if not ours or not set(ours) <= expected.keys():
            unexpected.append(name)
            continue
        if len(ours) == 3:  # fused qkv: rows [q; k; v]
            if tensor.shape[0] % 3:
                raise ValueError(f"{where}: {name} has {tensor.shape[0]} rows, not a multiple of 3 (q, k, v)")
            for key, part in zip(ours, tensor.chunk(3, dim=0), strict=True):
                out[key] = part.contiguous()
        else:
            out[ours[0]] = tensor
    missing = sorted({released_name(k) or k for k in expected.keys() - out.keys()})
    if missing or unexpected:
        raise ValueError(
            f"{where} does not fit the released InternVL3.5 layout: missing {_listing(missing)}, "
            f"unexpected {_listing(unexpected)}"
        )
    wrong = sorted({f"{released_name(k)} {tuple(t.shape)} (expected {tuple(expected[k].shape)})"
                    for k, t in out.items() if t.shape != expected[k].shape})
    if wrong:
        raise ValueError(f"{where}: tensor shapes do not fit the config: {_listing(wrong, 6)}")
    return out


def vision_state_to_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our vision-side state dict -> released names (q, k, v fused back into ``attn.qkv``)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        name = released_name(key)
        if name is None:
            raise ValueError(f"{key} has no place in the released layout")
        if m := _QKV_OURS.fullmatch(key):
            fused.setdefault(name, {})[m["qkv"]] = tensor
        else:
            out[name] = tensor
    for name, parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"{name}: q, k and v are all needed, got {sorted(parts)}")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def is_vir_tensor(name: str) -> bool:
    return name.startswith(VIR_PREFIXES)


# -- config ---------------------------------------------------------------------------------------
def _require(cfg: dict[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise ValueError(f"{where}: config.json has no {key!r}")
    return cfg[key]


def vir_policy(cfg: dict[str, Any], where: str = "config.json") -> ViRPolicy | None:
    """``flash_mode`` / ``flash_relative_threshold`` / ``flash_absolute_threshold`` -> our policy.

    Truthy ``flash_mode``: the released rule, ``ViRPolicy("auto", relative, absolute,
    single_tile="quantile")``; false: ``ViRPolicy("full")`` (the released code then runs the
    256-token path only); absent: ``None`` (not a Flash config)."""
    if "flash_mode" not in cfg:
        return None
    if not cfg["flash_mode"]:
        return ViRPolicy("full")
    values = {}
    for key in FLASH_KEYS[1:]:
        value = _require(cfg, key, where)
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key}={value!r} is not a number") from None
        if not 0.0 <= values[key] <= 1.0:
            raise ValueError(f"{where}: {key}={value!r} must be in [0, 1]")
    return ViRPolicy("auto", relative=values["flash_relative_threshold"],
                     absolute=values["flash_absolute_threshold"], single_tile="quantile")


def vision_config(cfg: dict[str, Any], with_vir: bool, encoder_id: str, where: str = "config.json"
                  ) -> VisionEncoderConfig:
    """The released ``config.json`` (``InternVLChatConfig``) -> our :class:`VisionEncoderConfig`."""
    vc = dict(_require(cfg, "vision_config", where))
    llm = _require(cfg, "llm_config", where)
    if cfg.get("select_layer", -1) != -1:
        raise ValueError(f"{where}: select_layer={cfg['select_layer']!r} is unsupported (InternVL3.5 uses -1)")
    ps_version = cfg.get("ps_version", "v1")  # InternVLChatConfig's default
    if ps_version != "v2":
        raise ValueError(f"{where}: ps_version={ps_version!r} is unsupported (our pixel shuffle is 'v2')")
    image_size = int(_require(vc, "image_size", f"{where} vision_config"))
    forced = cfg.get("force_image_size")
    if forced not in (None, image_size):
        raise ValueError(f"{where}: force_image_size={forced!r} differs from vision_config.image_size={image_size} "
                         "(position embeddings would need resizing)")
    # InternVisionConfig's defaults where a key is absent: qkv_bias False, qk_normalization True,
    # norm_type rms_norm, layer_norm_eps 1e-6, hidden_act gelu.
    vision = InternVLVisionConfig(
        hidden_size=int(_require(vc, "hidden_size", f"{where} vision_config")),
        num_hidden_layers=int(_require(vc, "num_hidden_layers", f"{where} vision_config")),
        num_attention_heads=int(_require(vc, "num_attention_heads", f"{where} vision_config")),
        intermediate_size=int(_require(vc, "intermediate_size", f"{where} vision_config")),
        image_size=image_size,
        patch_size=int(vc.get("patch_size", 14)),
        num_channels=int(vc.get("num_channels", 3)),
        hidden_act=vc.get("hidden_act", "gelu"),
        layer_norm_eps=float(vc.get("layer_norm_eps", 1e-6)),
        norm_type=vc.get("norm_type", "rms_norm"),
        attention_bias=bool(vc.get("qkv_bias", False)),
        use_qk_norm=bool(vc.get("qk_normalization", True)),
        layer_scale_init_value=float(vc.get("initializer_factor", 0.1)),
    )
    if with_vir and vision.hidden_size % RELEASED_ROUTER_HEADS:
        raise ValueError(f"{where}: vision hidden_size {vision.hidden_size} is not divisible by the released "
                         f"router's {RELEASED_ROUTER_HEADS} heads")
    policy = vir_policy(cfg, where)
    return VisionEncoderConfig(
        vision_config=vision,
        text_hidden_size=int(_require(llm, "hidden_size", f"{where} llm_config")),
        downsample_ratio=float(cfg.get("downsample_ratio", 0.5)),
        with_vir=with_vir,
        router_heads=RELEASED_ROUTER_HEADS,
        encoder_id=encoder_id,
        router_arch="released",
        vir_policy=policy if with_vir else None,
    )


def text_config(cfg: dict[str, Any], where: str = "config.json") -> PretrainedConfig:
    """``llm_config`` -> the transformers config of the LM (Qwen3 for InternVL3.5); no remote code."""
    llm = dict(_require(cfg, "llm_config", where))
    model_type = llm.pop("model_type", None)
    arch = (llm.get("architectures") or ["?"])[0]
    if not model_type:
        raise ValueError(f"{where}: llm_config has no model_type (architecture {arch!r})")
    try:
        return AutoConfig.for_model(model_type, **llm)
    except ValueError:
        raise ValueError(f"{where}: llm_config model_type {model_type!r} ({arch}) is not a transformers "
                         "model; remote code is never run") from None
