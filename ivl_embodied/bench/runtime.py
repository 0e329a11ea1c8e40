"""``ivl-embodied bench vision-runtime``: vision ms/tile, torch vs onnxruntime, same graph.

Random weights with ViR (Flash) heads; the full ``encode`` (ViT + both projectors + router +
routing/assembly) on a 2x2 grid + thumbnail (5 tiles) with ViR 'auto'. Configs: ``tiny``
(ViT 2x64, 56-px tiles) and ``mid`` (ViT 6x384, 448-px tiles: 1025 tokens per tile like the
real model, ~11 M ViT parameters against InternViT-300M's 300 M). CPU, fp32, median of repeats.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

CONFIGS = {  # name -> (tile px, ViT hidden, ViT layers, heads, LLM hidden, repeats)
    "tiny": (56, 64, 2, 4, 64, 20),
    "mid": (448, 384, 6, 6, 896, 3),
}
GRID = (2, 2)  # + thumbnail -> 5 tiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for both (0 = torch default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocations, ORT's first-run planning)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def make_encoder(name: str, seed: int = 0):
    from transformers import InternVLVisionConfig

    from ivl_embodied.vision.encoder import VisionEncoder, VisionEncoderConfig

    tile, hidden, layers, heads, text_hidden, _ = CONFIGS[name]
    vc = InternVLVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=4 * hidden, image_size=tile, patch_size=14)
    torch.manual_seed(seed)
    cfg = VisionEncoderConfig(vc, text_hidden, with_vir=True, encoder_id=f"bench-{name}+vir")
    return VisionEncoder(cfg).eval()


def bench_config(name: str, threads: int) -> dict:
    from ivl_embodied.export.onnx_export import export_onnx
    from ivl_embodied.runtime.ort_backend import OrtVisionBackend
    from ivl_embodied.vision.tiling import Tiles
    from ivl_embodied.vision.vir import ViRPolicy

    repeats = CONFIGS[name][-1]
    encoder = make_encoder(name)
    t = encoder.config.tile_size
    n = GRID[0] * GRID[1] + 1
    gen = torch.Generator().manual_seed(1)
    tiles = Tiles(torch.randn(n, 3, t, t, generator=gen), GRID[0], GRID[1], True, 2 * t, 2 * t, t)
    policy = ViRPolicy("auto")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = export_onnx(encoder, Path(tmp) / f"{name}.onnx")
        export_s = time.perf_counter() - t0
        ort = OrtVisionBackend(path, device="cpu", threads=threads)
        torch_ms = _median_ms(lambda: encoder.encode(tiles, policy), repeats) / n
        ort_ms = _median_ms(lambda: ort.encode(tiles, policy), repeats) / n
        a, b = encoder.encode(tiles, policy), ort.encode(tiles, policy)
        ort.close()
    same_routing = a.tokens_per_tile == b.tokens_per_tile
    return {
        "config": name, "tile_size": t, "tiles": n,
        "vit_params_m": round(sum(p.numel() for p in encoder.vision_tower.parameters()) / 1e6, 2),
        "torch_ms_per_tile": round(torch_ms, 2), "onnxruntime_ms_per_tile": round(ort_ms, 2),
        "speedup": round(torch_ms / ort_ms, 2), "export_s": round(export_s, 1),
        "same_tokens_per_tile": same_routing, "tokens_per_tile": list(a.tokens_per_tile),
        "max_abs_diff": float((a.embeddings - b.embeddings).abs().max()) if same_routing else None,
        "repeats": repeats,
    }


def run(args: argparse.Namespace) -> int:
    import onnxruntime

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or torch.get_num_threads()
    names = list(CONFIGS) if args.config == "all" else [args.config]
    result = {
        "machine": {"cpu_threads": threads, "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "results": [],
    }
    for name in names:
        logger.info("benchmarking vision runtime, %s config", name)
        result["results"].append(bench_config(name, threads))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in result["results"]:
            print(f"{r['config']:>4} ({r['tile_size']} px, {r['tiles']} tiles, ViT {r['vit_params_m']} M): "
                  f"torch {r['torch_ms_per_tile']} ms/tile, onnxruntime {r['onnxruntime_ms_per_tile']} ms/tile "
                  f"(x{r['speedup']}), max |diff| {r['max_abs_diff']}")
    return 0
