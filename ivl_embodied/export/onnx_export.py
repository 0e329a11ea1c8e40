"""Vision side -> ONNX graph ``vit_full`` with a dynamic tile-batch axis.

``pixel_values [N, 3, T, T]`` -> InternViT -> pixel shuffle 0.5 -> ``mlp1`` -> ``embeds_full
[N, T256, D]``; Flash checkpoints add ``p_compress [N]`` (the router's compress probability) and
``embeds_compressed [N, T64, D]`` (pixel shuffle 0.25 -> ``mlp2``). Both paths are computed for
every tile (the projectors are small next to the ViT); which block a tile contributes is decided
per request in Python (:func:`ivl_embodied.runtime.base.assemble_embeddings`).

We use torch's TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which is not a dependency, and tracing handles transformers' InternVLVisionModel
(sdpa attention) with the batch axis kept symbolic. Opset >= 17 so LayerNorm stays one
``LayerNormalization`` node, which TensorRT runs in fp32 inside fp16 engines.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ivl_embodied.runtime.meta import (
    INPUT_NAME,
    GraphMeta,
)

logger = logging.getLogger(__name__)

GRAPH_NAME = "vit_full"
MIN_OPSET, MAX_OPSET = 17, 20  # 20: highest opset torch's TorchScript exporter emits


@dataclass(frozen=True)
class OnnxExportSettings:
    """``opset``; ``example_tiles`` is the traced batch (>= 2 so the tile axis is never specialised)."""

    opset: int = 17
    example_tiles: int = 2
    check: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ValueError(f"opset must be an int in {MIN_OPSET}..{MAX_OPSET}, got {self.opset!r}")
        if not isinstance(self.example_tiles, int) or self.example_tiles < 2:
            raise ValueError(f"example_tiles must be an int >= 2, got {self.example_tiles!r}")


class VisionGraph(nn.Module):
    """The exported computation: all tiles through ViT, both projectors and the router."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.with_vir = bool(encoder.config.with_vir)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        grid = self.encoder.vit_features(pixel_values)  # [N, side, side, C]
        full = self.encoder.project_full(grid)  # [N, T256, D]
        if not self.with_vir:
            return (full,)
        n, side, _, c = grid.shape
        p_compress = self.encoder.vision_router(grid.reshape(n, side * side, c))[:, 1]  # [N]
        compressed = self.encoder.project_compressed(grid)  # [N, T64, D]
        return full, p_compress, compressed


def export_onnx(
    vision: str | Path | nn.Module, out: str | Path, settings: OnnxExportSettings = OnnxExportSettings()
) -> Path:
    """Export a vision checkpoint dir (full/Flash -HF or split) or a loaded VisionEncoder to ``out``."""
    import onnx

    if isinstance(vision, nn.Module):
        encoder = vision
    else:
        from ivl_embodied.checkpoints.internvl import load_vision

        encoder = load_vision(vision, dtype=torch.float32, device="cpu")
    encoder = encoder.to(torch.float32).eval()
    meta = GraphMeta.from_encoder_config(encoder.config)
    graph = VisionGraph(encoder).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t = meta.tile_size
    example = torch.zeros(settings.example_tiles, 3, t, t)  # [N, 3, T, T]
    outputs = list(meta.output_names)
    dynamic = {name: {0: "tiles"} for name in [INPUT_NAME, *outputs]}
    with warnings.catch_warnings():
        # shape arithmetic in pixel_shuffle/vit_features traces as symbolic ops (checked by the
        # parity tests over 1..7 tiles); the tracer's "might not generalize" notes are expected
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        with torch.no_grad():
            torch.onnx.export(
                graph, (example,), str(out), dynamo=False, opset_version=settings.opset,
                input_names=[INPUT_NAME], output_names=outputs, dynamic_axes=dynamic,
                do_constant_folding=True,
            )
    model = onnx.load(str(out))
    model.graph.name = GRAPH_NAME
    model.producer_name = "ivl_embodied"
    model.doc_string = f"InternVL3.5 vision side ({meta.encoder_id}): {', '.join(outputs)}"
    del model.metadata_props[:]
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    if settings.check:
        onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))
    logger.info("exported %s (opset %d, ViR=%s, %.1f MB) to %s", meta.encoder_id, settings.opset,
                meta.with_vir, out.stat().st_size / 1e6, out)
    return out


def read_onnx_metadata(path: str | Path) -> GraphMeta:
    """The :class:`GraphMeta` stored in an exported file (without loading the weights)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ONNX file {str(p)!r} does not exist")
    model = onnx.load(str(p), load_external_data=False)
    return GraphMeta.from_props({kv.key: kv.value for kv in model.metadata_props}, str(p))


def compare_with_torch(encoder: nn.Module, onnx_path: str | Path, tile_counts=(1, 3), seed: int = 0) -> dict:
    """Max |onnxruntime - torch| per output for random tiles of each count (CPU, fp32)."""
    from ivl_embodied.runtime.ort_backend import OrtVisionBackend

    backend = OrtVisionBackend(onnx_path, device="cpu")
    graph = VisionGraph(encoder.to(torch.float32).eval())
    gen = torch.Generator().manual_seed(seed)
    t = backend.tile_size
    diffs: dict[str, float] = {}
    for n in tile_counts:
        x = torch.randn(n, 3, t, t, generator=gen)  # [n, 3, T, T]
        with torch.no_grad():
            ref = dict(zip(backend.meta.output_names, graph(x), strict=True))
        got = backend.run_graph(x)
        for name in backend.meta.output_names:
            if got[name].shape != ref[name].shape:
                raise RuntimeError(f"{name}: onnxruntime {tuple(got[name].shape)} vs torch {tuple(ref[name].shape)}")
            d = float((got[name] - ref[name]).abs().max())
            diffs[name] = max(diffs.get(name, 0.0), d)
    backend.close()
    return diffs
