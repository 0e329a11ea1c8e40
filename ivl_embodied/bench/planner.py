"""``ivl-embodied bench planner``: the planner's decoding against transformers' ``generate``, side by side.

Two models: the shipped default planner (its trained weights) and Qwen3-0.6B shapes (InternVL3.5-1B's
language model, random weights). For each, in one process and interleaved repeat by repeat (the machine's
noise hits every method alike), the same prompt (random token ids) is decoded greedily for the same number
of new tokens by

* ``hf``: ``transformers`` ``generate`` (its dynamic cache, eos disabled so every run makes all tokens);
* ``static``: :class:`~ivl_embodied.language.fast_decode.StaticDecoder` on the model's own weights;
* ``static-int8``: the same with int8 weights (CPU);
* ``hf-int8``: transformers ``generate`` on a copy of the model whose linears carry those same int8 weights
  (:func:`~ivl_embodied.language.fast_decode.int8_model`): the reference ``static-int8`` must match token for
  token, and the speed transformers itself gets from them.

Reported per method: medians of the whole call (prefill + decode), of the prefill alone, and decode
tokens/s = new tokens / (whole - prefill median); the ratio of decode speeds against ``hf``; and how many of
the new tokens equal ``hf``'s and ``hf-int8``'s (prefix counts: the first difference changes everything
after it). For the
shipped planner it also times what the planner node runs, ``LanguagePlanner.generate`` with constrained
decoding, with the ``hf`` and ``static`` decoders (whole plans, ms).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time

import torch

logger = logging.getLogger(__name__)

PLANS = {  # prompt tokens, new tokens, repeats
    "shipped": {"prompt": 300, "new": 64, "repeats": 7},
    "0.6b": {"prompt": 64, "new": 32, "repeats": 5},
}
METHODS = ("hf", "static", "static-int8", "hf-int8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--config", choices=["shipped", "0.6b", "all"], default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=0, help="override the repeats of each config")


def _model(name: str):
    from transformers import AutoModelForCausalLM

    if name == "shipped":
        from ivl_embodied.checkpoints.internvl import load_language
        from ivl_embodied.checkpoints.planner import resolve_checkpoint

        planner = load_language(resolve_checkpoint("default", "language"))
        return planner.lm.eval(), planner
    from ivl_embodied.checkpoints.tiny import internvl3_5_1b_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(internvl3_5_1b_config().text_config).eval(), None


def _prefix_equal(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def bench_config(name: str, repeats: int = 0) -> dict:
    from ivl_embodied.language.fast_decode import StaticDecoder, int8_model

    plan = dict(PLANS[name])
    repeats = repeats or plan["repeats"]
    lm, planner = _model(name)
    cfg = lm.config
    prompt, new = plan["prompt"], plan["new"]
    ids = torch.randint(0, cfg.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(0))
    table = lm.get_input_embeddings()
    decoders = {"static": StaticDecoder(lm, max_len=prompt + new),
                "static-int8": StaticDecoder(lm, max_len=prompt + new, weights="int8")}

    lm_int8 = int8_model(lm)

    def run_hf(model) -> list[int]:
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=None,
                             pad_token_id=0)
        return out[0, prompt:].tolist()

    def run_static(dec: StaticDecoder) -> list[int]:
        logits, tokens = dec.prefill(table(ids)), []
        for _ in range(new):
            tokens.append(int(logits.argmax()))
            logits = dec.step(tokens[-1], table)
        return tokens

    def prefill(method: str) -> None:
        if method.startswith("hf"):
            (lm_int8 if method == "hf-int8" else lm)(input_ids=ids, use_cache=True)
        else:
            decoders[method].prefill(table(ids))

    calls = {"hf": lambda: run_hf(lm), "hf-int8": lambda: run_hf(lm_int8),
             **{m: (lambda d=d: run_static(d)) for m, d in decoders.items()}}
    whole: dict[str, list[float]] = {m: [] for m in METHODS}
    first: dict[str, list[float]] = {m: [] for m in METHODS}
    tokens: dict[str, list[int]] = {}
    with torch.no_grad():
        for m in METHODS:  # warm-up
            tokens[m] = calls[m]()
        for r in range(repeats):
            for m in METHODS:
                t0 = time.perf_counter()
                calls[m]()
                whole[m].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                prefill(m)
                first[m].append(time.perf_counter() - t0)
            logger.info("%s: repeat %d/%d done", name, r + 1, repeats)
    result = {"config": name, "language_params_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 1),
              "prompt_tokens": prompt, "new_tokens": new, "repeats": repeats, "methods": {}}
    for m in METHODS:
        w, p = statistics.median(whole[m]), statistics.median(first[m])
        result["methods"][m] = {
            "whole_ms": round(1e3 * w, 1), "prefill_ms": round(1e3 * p, 1),
            "decode_tokens_per_s": round(new / max(w - p, 1e-9), 2),
            "tokens_equal_to_hf": _prefix_equal(tokens[m], tokens["hf"]),
            "tokens_equal_to_hf_int8": _prefix_equal(tokens[m], tokens["hf-int8"]),
            "extra_bytes": decoders[m].nbytes() if m in decoders else None,
        }
    base = result["methods"]["hf"]["decode_tokens_per_s"]
    for m in METHODS:
        result["methods"][m]["decode_vs_hf"] = round(result["methods"][m]["decode_tokens_per_s"] / base, 2)
    if planner is not None:
        result["plans"] = _bench_plans(planner, repeats)
    return result


def _bench_plans(planner, repeats: int) -> dict:
    """Whole constrained plans from ``LanguagePlanner.generate`` with each decoder (the planner node's call)."""
    from ivl_embodied.language.planner import GenerationSettings

    vis = torch.randn(256, planner.hidden_size, generator=torch.Generator().manual_seed(0))  # one tile's rows
    instruction = "put the red cube in the green bowl"
    settings = GenerationSettings(max_new_tokens=160)
    times: dict[str, list[float]] = {"hf": [], "static": []}
    texts = {}
    with torch.no_grad():
        for d in times:
            planner.set_decoder(d)
            texts[d] = planner.generate(vis, instruction, settings).text  # warm-up
        for _ in range(repeats):
            for d in times:
                planner.set_decoder(d)
                t0 = time.perf_counter()
                planner.generate(vis, instruction, settings)
                times[d].append(time.perf_counter() - t0)
    planner.set_decoder("auto")
    hf, static = statistics.median(times["hf"]), statistics.median(times["static"])
    return {"plan_ms_hf": round(1e3 * hf, 1), "plan_ms_static": round(1e3 * static, 1),
            "speedup": round(hf / static, 2), "same_plan": texts["hf"] == texts["static"],
            "plan_chars": len(texts["static"])}


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    names = list(PLANS) if args.config == "all" else [args.config]
    results = {"machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()},
               "results": [bench_config(n, args.repeats) for n in names]}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results["results"]:
        print(f"{r['config']} ({r['language_params_m']} M params; {r['prompt_tokens']} prompt + {r['new_tokens']} "
              f"new tokens, median of {r['repeats']}, {results['machine']['cpu_threads']} thread(s))")
        for m, v in r["methods"].items():
            print(f"  {m:<12} decode {v['decode_tokens_per_s']:>8} tok/s  {v['decode_vs_hf']:>5}x hf   "
                  f"prefill {v['prefill_ms']:>8} ms   tokens equal to hf {v['tokens_equal_to_hf']}/{r['new_tokens']}, "
                  f"to hf-int8 {v['tokens_equal_to_hf_int8']}/{r['new_tokens']}")
        if "plans" in r:
            p = r["plans"]
            print(f"  LanguagePlanner.generate (constrained plan, {p['plan_chars']} chars): hf decoder "
                  f"{p['plan_ms_hf']} ms, static {p['plan_ms_static']} ms: {p['speedup']}x; "
                  f"same plan: {p['same_plan']}")
    return 0
