"""Loading InternVL3.5 checkpoints from local directories, and splitting them for DvD.

Accepted sources (always ``local_files_only=True``, never ``trust_remote_code``, weights
from ``*.safetensors`` only):

* an InternVL3.5 ``-HF`` directory (transformers' ``InternVLForConditionalGeneration``:
  ``config.json`` with ``model_type: internvl``, sharded or single safetensors, tokenizer).
  Key prefixes of both transformers layouts are understood: ``model.vision_tower.`` /
  ``vision_tower.``, ``model.multi_modal_projector.`` / ``multi_modal_projector.``,
  ``model.language_model.`` / ``language_model.model.``, ``lm_head.`` /
  ``language_model.lm_head.``.
* the same with Flash (ViR) extras, under our key names ``model.mlp2.*`` and
  ``model.vision_router.*`` (``model.`` optional; layouts in :mod:`.vision` / :mod:`.vir`).
* a released InternVL3.5(-Flash) directory as OpenGVLab publishes it (remote-code format,
  ``config.json`` with ``model_type: internvl_chat``; ``vision_model.*``, ``mlp1.*``,
  ``mlp2.*``, ``pooling_before_gating.*``, ``gating.*``, ``language_model.*``), read through
  the key and config map of :mod:`.released` -- strictly, every tensor accounted for -- and
  never by running its code.
* split directories written by :func:`split_checkpoint`:
  vision: ``vision_config.json`` (``format: ivl_embodied.vision/1``) + ``model.safetensors``
  with keys ``vision_tower.*``, ``multi_modal_projector.*`` [``mlp2.*``, ``vision_router.*``];
  language: a plain transformers causal-LM dir (``config.json`` + safetensors) + tokenizer
  files + ``ivl_language.json`` (``format: ivl_embodied.language/1``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, InternVLVisionConfig

from ivl_embodied.checkpoints import released
from ivl_embodied.language.planner import LanguagePlanner, PlannerConfig
from ivl_embodied.vision.encoder import VisionEncoder, VisionEncoderConfig
from ivl_embodied.vision.vir import ViRPolicy

logger = logging.getLogger(__name__)

VISION_FORMAT = "ivl_embodied.vision/1"
LANGUAGE_FORMAT = "ivl_embodied.language/1"
_VISION_PREFIXES = {  # checkpoint prefix -> our VisionEncoder prefix
    "model.vision_tower.": "vision_tower.",
    "vision_tower.": "vision_tower.",
    "model.multi_modal_projector.": "multi_modal_projector.",
    "multi_modal_projector.": "multi_modal_projector.",
    "model.mlp2.": "mlp2.",
    "mlp2.": "mlp2.",
    "model.vision_router.": "vision_router.",
    "vision_router.": "vision_router.",
}
_LANGUAGE_PREFIXES = {  # checkpoint prefix -> our causal-LM prefix
    "model.language_model.": "model.",
    "language_model.model.": "model.",
    "language_model.lm_head.": "lm_head.",
    "lm_head.": "lm_head.",
}


def _reject_remote_code(kwargs: dict[str, Any]) -> None:
    if kwargs.get("trust_remote_code"):
        raise ValueError("trust_remote_code=True is refused: InternVL3.5 -HF checkpoints need no remote code")
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")


def _check_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(p)!r} does not exist (weights are never downloaded)")
    return p


def _read_mapped(src: Path, prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    """Tensors of all ``*.safetensors`` in ``src`` whose key starts with a known prefix, renamed."""
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {str(src)!r} (only safetensors weights are loaded)")
    out: dict[str, torch.Tensor] = {}
    ordered = sorted(prefixes, key=len, reverse=True)  # longest prefix first
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                pre = next((p for p in ordered if key.startswith(p)), None)
                if pre is not None:
                    out[prefixes[pre] + key[len(pre) :]] = sf.get_tensor(key)
    return out


def _read_filtered(src: Path, keep) -> dict[str, torch.Tensor]:
    """Tensors of all ``*.safetensors`` in ``src`` whose key ``keep(key)`` accepts, names unchanged."""
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {str(src)!r} (only safetensors weights are loaded)")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                if keep(key):
                    out[key] = sf.get_tensor(key)
    return out


_FULL_LAYOUTS = {"internvl": "hf", released.RELEASED_MODEL_TYPE: "released"}


def full_layout(src: str | Path) -> str:
    """Layout of a full checkpoint dir: 'hf' (transformers ``internvl``) or 'released' (``internvl_chat``)."""
    p = _check_dir(src)
    cfg = p / "config.json"
    model_type = json.loads(cfg.read_text()).get("model_type") if cfg.is_file() else None
    if model_type not in _FULL_LAYOUTS:
        raise ValueError(f"{str(p)!r} is not a full InternVL checkpoint (config.json model_type {model_type!r})")
    return _FULL_LAYOUTS[model_type]


def checkpoint_kind(src: str | Path) -> str:
    """'internvl' (full -HF / Flash / released dir), 'vision' or 'language' (split dirs)."""
    p = _check_dir(src)
    if (p / "vision_config.json").is_file():
        return "vision"
    if (p / "ivl_language.json").is_file():
        return "language"
    cfg = p / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("model_type") in _FULL_LAYOUTS:
        return "internvl"
    raise ValueError(f"{str(p)!r} is neither an InternVL -HF checkpoint nor an ivl_embodied split directory")


def _load_released_vision(p: Path) -> tuple[VisionEncoder, dict[str, torch.Tensor]]:
    """A released (remote-code format) dir -> our encoder; every vision-side tensor must fit."""
    cfg = json.loads((p / "config.json").read_text())
    where = f"released checkpoint {str(p)!r}"
    tensors = _read_filtered(p, lambda k: not k.startswith(released.LANGUAGE_PREFIX))
    vir = sorted(k for k in tensors if released.is_vir_tensor(k))
    with_vir = bool(vir) or bool(cfg.get("flash_mode"))  # flash_mode without the tensors: reported missing
    config = released.vision_config(cfg, with_vir, f"{p.name}{'+vir' if with_vir else ''}", where)
    encoder = VisionEncoder(config)
    state = released.vision_state_to_ours(tensors, encoder.state_dict(), where)
    encoder.load_state_dict(state, strict=True)
    return encoder, tensors


def _check_released_language_keys(p: Path) -> None:
    """Every ``language_model.*`` tensor of a released dir must be the LM's (``.model.*`` / ``.lm_head.*``)."""
    known = tuple(k for k in _LANGUAGE_PREFIXES if k.startswith(released.LANGUAGE_PREFIX))
    stray = []
    for f in sorted(p.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            stray += [k for k in sf.keys() if k.startswith(released.LANGUAGE_PREFIX) and not k.startswith(known)]
    if stray:
        raise ValueError(f"released checkpoint {str(p)!r}: unexpected language tensors {sorted(stray)[:12]}")


def _finish(module: torch.nn.Module, dtype: torch.dtype, device: str | torch.device) -> torch.nn.Module:
    return module.to(device=device, dtype=dtype).eval()


def _source_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    return next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)


def load_vision(
    src: str | Path, dtype: torch.dtype | None = torch.float32, device: str | torch.device = "cpu", **kwargs: Any
) -> VisionEncoder:
    """Vision side (ViT + mlp1 [+ mlp2 + router]) from a full or a split-vision directory.

    ``dtype=None`` keeps the dtype the weights are stored in.
    """
    _reject_remote_code(kwargs)
    p = _check_dir(src)
    kind = checkpoint_kind(p)
    if kind == "vision":
        meta = json.loads((p / "vision_config.json").read_text())
        if meta.get("format") != VISION_FORMAT:
            raise ValueError(f"unknown vision format {meta.get('format')!r}; expected {VISION_FORMAT!r}")
        config = VisionEncoderConfig(
            vision_config=InternVLVisionConfig(**meta["vision_config"]),
            text_hidden_size=int(meta["text_hidden_size"]),
            downsample_ratio=float(meta["downsample_ratio"]),
            with_vir=bool(meta["with_vir"]),
            router_heads=int(meta["router_heads"]),
            encoder_id=str(meta["encoder_id"]),
            router_arch=str(meta.get("router_arch", "ivl")),
            vir_policy=ViRPolicy(**meta["vir_policy"]) if meta.get("vir_policy") else None,
        )
    elif kind == "internvl" and full_layout(p) == "released":
        encoder, tensors = _load_released_vision(p)
        logger.info("loaded vision side from released layout %s (ViR=%s, %d tensors)", p, encoder.config.with_vir,
                    len(tensors))
        return _finish(encoder, dtype or _source_dtype(tensors), device)
    elif kind == "internvl":
        cfg = AutoConfig.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
        if cfg.vision_feature_layer != -1 or cfg.vision_feature_select_strategy != "default":
            raise ValueError(
                f"unsupported vision_feature_layer={cfg.vision_feature_layer!r} / "
                f"select_strategy={cfg.vision_feature_select_strategy!r} (InternVL3.5 uses -1 / 'default')"
            )
        config = None
    else:
        raise ValueError(f"{str(p)!r} is a language-only directory; it has no vision weights")
    state = _read_mapped(p, _VISION_PREFIXES)
    if config is None:
        with_vir = any(k.startswith("mlp2.") for k in state)
        vir_meta = getattr(cfg, "ivl_vir", None) or {}
        config = VisionEncoderConfig(
            vision_config=cfg.vision_config,
            text_hidden_size=cfg.text_config.hidden_size,
            downsample_ratio=cfg.downsample_ratio,
            projector_hidden_act=cfg.projector_hidden_act,
            with_vir=with_vir,
            router_heads=int(vir_meta.get("router_heads", 16)),
            encoder_id=f"{p.name}{'+vir' if with_vir else ''}",
        )
    encoder = VisionEncoder(config)
    encoder.load_state_dict(state, strict=True)
    logger.info("loaded vision side from %s (ViR=%s, %d tensors)", p, config.with_vir, len(state))
    return _finish(encoder, dtype or _source_dtype(state), device)


def load_language(
    src: str | Path,
    dtype: torch.dtype | None = torch.float32,
    device: str | torch.device = "cpu",
    planner_config: PlannerConfig | None = None,
    **kwargs: Any,
) -> LanguagePlanner:
    """Language side (LM + tokenizer) from a full or a split-language directory.

    ``dtype=None`` keeps the dtype the weights are stored in.
    """
    _reject_remote_code(kwargs)
    p = _check_dir(src)
    kind = checkpoint_kind(p)
    if kind == "vision":
        raise ValueError(f"{str(p)!r} is a vision-only directory; it has no language model")
    tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
    if kind == "language":
        meta = json.loads((p / "ivl_language.json").read_text())
        if meta.get("format") != LANGUAGE_FORMAT:
            raise ValueError(f"unknown language format {meta.get('format')!r}; expected {LANGUAGE_FORMAT!r}")
        lm = AutoModelForCausalLM.from_pretrained(
            str(p), local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=dtype or "auto"
        )
        stored = lm.get_input_embeddings().weight.dtype
        if planner_config is None:
            planner_config = PlannerConfig(system_prompt=meta.get("system_prompt", PlannerConfig().system_prompt))
    else:
        if full_layout(p) == "released":
            _check_released_language_keys(p)
            text_config = released.text_config(json.loads((p / "config.json").read_text()), f"{str(p)!r}")
            tie_cfg = bool(getattr(text_config, "tie_word_embeddings", False))
        else:
            cfg = AutoConfig.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
            text_config = copy.deepcopy(cfg.text_config)
            tie_cfg = bool(getattr(cfg, "tie_word_embeddings", False))
        state = _read_mapped(p, _LANGUAGE_PREFIXES)
        tie = tie_cfg or "lm_head.weight" not in state
        text_config.tie_word_embeddings = tie
        lm = AutoModelForCausalLM.from_config(text_config)
        if tie:
            state.pop("lm_head.weight", None)
        missing, unexpected = lm.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (tie and k == "lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"language weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if tie:
            lm.tie_weights()
        stored = _source_dtype(state)
    logger.info("loaded language side from %s (%s)", p, type(lm).__name__)
    return LanguagePlanner(_finish(lm, dtype or stored, device), tokenizer, planner_config or PlannerConfig())


def save_vision(encoder: VisionEncoder, out: str | Path) -> Path:
    """Write a self-contained vision directory (config json + model.safetensors)."""
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    c = encoder.config
    meta = {
        "format": VISION_FORMAT,
        "vision_config": c.vision_config.to_dict(),
        "text_hidden_size": c.text_hidden_size,
        "downsample_ratio": c.downsample_ratio,
        "with_vir": c.with_vir,
        "router_heads": c.router_heads,
        "encoder_id": c.encoder_id,
        "router_arch": c.router_arch,
        "vir_policy": dataclasses.asdict(c.vir_policy) if c.vir_policy is not None else None,
        "tile_size": c.tile_size,
        "tokens_per_tile": {"full": c.tokens_full, "compressed": c.tokens_compressed if c.with_vir else None},
    }
    (o / "vision_config.json").write_text(json.dumps(meta, indent=2, default=list))
    state = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    save_file(state, str(o / "model.safetensors"), metadata={"format": "pt"})
    return o


def save_language(planner: LanguagePlanner, out: str | Path) -> Path:
    """Write a self-contained language directory (causal LM + tokenizer + ivl_language.json)."""
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    planner.lm.save_pretrained(str(o), safe_serialization=True)
    planner.tokenizer.save_pretrained(str(o))
    meta = {"format": LANGUAGE_FORMAT, "system_prompt": planner.config.system_prompt}
    (o / "ivl_language.json").write_text(json.dumps(meta, indent=2))
    return o


def split_checkpoint(
    src: str | Path, vision_out: str | Path, language_out: str | Path, dtype: torch.dtype | None = None
) -> tuple[Path, Path]:
    """Split a full InternVL3.5 (-HF, Flash or released) directory into vision and language directories.

    ``dtype=None`` keeps the stored dtype (bf16 for the released checkpoints).
    """
    if checkpoint_kind(src) != "internvl":
        raise ValueError(f"{str(src)!r} is not a full InternVL checkpoint; nothing to split")
    v = save_vision(load_vision(src, dtype=dtype), vision_out)
    lang = save_language(load_language(src, dtype=dtype), language_out)
    logger.info("split %s into %s and %s", src, v, lang)
    return v, lang
