"""``ivl-embodied bench model``: vision ms/tile, planner prefill ms, decode tokens/s.

Random weights of the tiny config and of an InternVL3.5-1B-shaped config (InternViT-300M
+ Qwen3-0.6B). fp32 on CPU, bf16 on CUDA when available. Medians over a few repeats; the
1B run is kept short (one tile, two repeats, 8 decode tokens) so it ends in minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

_PLAN = {"tiny": {"tiles": 4, "repeats": 5, "decode": 32, "prompt_text": 48},
         "1b": {"tiles": 1, "repeats": 2, "decode": 8, "prompt_text": 48}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--config", choices=["tiny", "1b", "all"], default="all")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")


def _median_ms(fn: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def bench_config(name: str) -> dict:
    from transformers import AutoModelForCausalLM

    from ivl_embodied.checkpoints.tiny import build_tokenizer, internvl3_5_1b_config, tiny_config
    from ivl_embodied.vision.encoder import VisionEncoder, VisionEncoderConfig

    plan = _PLAN[name]
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = tiny_config(build_tokenizer(), tile_size=448) if name == "tiny" else internvl3_5_1b_config()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    enc = VisionEncoder(VisionEncoderConfig(cfg.vision_config, cfg.text_config.hidden_size)).to(device, dtype).eval()
    lm = AutoModelForCausalLM.from_config(cfg.text_config).to(device, dtype).eval()
    build_s = time.perf_counter() - t0
    tile = enc.config.tile_size
    pixels = torch.randn(plan["tiles"], 3, tile, tile, device=device, dtype=dtype)  # [N, 3, tile, tile]
    with torch.no_grad():
        vision_ms = _median_ms(lambda: enc(pixels), plan["repeats"], sync) / plan["tiles"]
        n_prompt = enc.config.tokens_full + plan["prompt_text"]  # one tile's tokens + text
        embeds = torch.randn(1, n_prompt, cfg.text_config.hidden_size, device=device, dtype=dtype)
        prefill_ms = _median_ms(lambda: lm(inputs_embeds=embeds, use_cache=True), plan["repeats"], sync)

        def decode() -> None:
            out = lm(inputs_embeds=embeds, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)  # [1, 1]
            for _ in range(plan["decode"]):
                out = lm(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
                tok = out.logits[:, -1:].argmax(-1)

        total_ms = _median_ms(decode, plan["repeats"], sync)
    decode_tps = plan["decode"] / max((total_ms - prefill_ms) / 1000.0, 1e-9)
    return {
        "config": name,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "vision_params_m": round(sum(p.numel() for p in enc.parameters()) / 1e6, 2),
        "language_params_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 2),
        "tile_size": tile,
        "tokens_per_tile": enc.config.tokens_full,
        "vision_ms_per_tile": round(vision_ms, 2),
        "prefill_tokens": n_prompt,
        "prefill_ms": round(prefill_ms, 2),
        "decode_tokens_per_s": round(decode_tps, 2),
        "repeats": plan["repeats"],
        "build_s": round(build_s, 1),
    }


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["tiny", "1b"] if args.config == "all" else [args.config]
    results = {
        "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "results": [],
    }
    for name in names:
        logger.info("benchmarking %s config", name)
        results["results"].append(bench_config(name))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results["results"]:
            print(f"{r['config']:>5} [{r['device']} {r['dtype']}]: vision {r['vision_ms_per_tile']} ms/tile "
                  f"({r['tokens_per_tile']} tok), prefill {r['prefill_ms']} ms for {r['prefill_tokens']} tok, "
                  f"decode {r['decode_tokens_per_s']} tok/s")
    return 0
