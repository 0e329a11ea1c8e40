"""``ivl-embodied bench dvd``: Decoupled Vision-language Deployment, serial against pipelined.

InternVL3.5's DvD runs the vision encoder and the language model on different hardware and passes
embeddings between them, so that while the language model plans one request the encoder already works on
the next. Here, for ``--requests`` camera frames:

* **serial**: one process encodes a frame, then plans from it, then takes the next frame (the
  vision-then-language loop of a single-process deployment), with ``--stage-threads`` threads, and again
  with all of the machine's cores (``--serial-threads``: what a single process would use);
* **pipelined**: a vision process encodes the frames back to back and publishes each ``VisualEmbedding``
  over our transport (reliable, keep all); the planner process plans each as it arrives. Each process has
  ``--stage-threads`` threads. Wall time from the vision process's start (CLOCK_MONOTONIC, one clock for
  both processes) to the last plan.

Printed beside the measured ratio, serial / pipelined: the **stage-time bound** of a two-stage pipeline,
(V + L) / max(V, L), from the serial run's own mean stage times per frame (V: encode, L: plan), and the same bound
for the run's N frames, N (V + L) / (V + L + (N - 1) max(V, L)) (the first frame has nothing to overlap
with). The pipeline cannot beat them; what it loses to transfer, serialization and two processes sharing the
machine (its cores, its memory bandwidth) shows as the gap.

Configs: ``shipped`` (the default planner's two halves and its tile budget, a 640×480 frame, the planner
node's constrained ``LanguagePlanner.generate``) and ``1b`` (InternVL3.5-1B shapes, random weights:
InternViT-300M on ``--tiles`` tiles, Qwen3-0.6B prefilling the visual tokens plus 48 text tokens and
decoding ``--new-tokens`` tokens with the planner's decoder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from ivl_embodied.bench.lines import JsonLines

logger = logging.getLogger(__name__)

TOPIC = "/ivl_bench/dvd/embeddings"
TYPE = "ivl_embodied_msgs/msg/VisualEmbedding"
DEFAULTS = {"shipped": {"requests": 24, "tiles": 0, "new_tokens": 160, "repeats": 5},
            "1b": {"requests": 3, "tiles": 1, "new_tokens": 16, "repeats": 2}}
INSTRUCTION = "put the red cube in the green bowl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=["shipped", "1b", "all"], default="all")
    parser.add_argument("--requests", type=int, default=0, help="frames per run (0: 24 shipped, 3 for 1b)")
    parser.add_argument("--tiles", type=int, default=0, help="max tiles per frame (0: the planner's own; 1b: 1)")
    parser.add_argument("--new-tokens", type=int, default=0, help="1b: tokens decoded per plan (0: 16)")
    parser.add_argument("--repeats", type=int, default=0, help="runs of each kind, medians (0: 5 shipped, 2 for 1b)")
    parser.add_argument("--stage-threads", type=int, default=1, help="torch threads of each stage's process")
    parser.add_argument("--serial-threads", type=int, default=0,
                        help="threads of the second serial run (0: all cores; -1: skip it)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the pipelined run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--_vision-child", dest="vision_child", default="", help=argparse.SUPPRESS)


# --------------------------------------------------------------------------- the two stages


class Stages:
    """The vision stage (frame → ``VisualEmbeddings``) and the language stage (embeddings → plan) of a config."""

    def __init__(self, config: str, tiles: int, new_tokens: int, side: str = "both"):
        self.config, self.new_tokens = config, new_tokens
        if config == "shipped":
            from ivl_embodied.checkpoints.internvl import load_language, load_vision
            from ivl_embodied.checkpoints.planner import planner_max_tiles, resolve_checkpoint

            vision_dir = resolve_checkpoint("default", "vision")
            self.max_tiles = tiles or planner_max_tiles(vision_dir, default=6)
            self.size = (480, 640)
            if side in ("both", "vision"):
                self.encoder = load_vision(vision_dir).eval()
            if side in ("both", "language"):
                self.planner = load_language(resolve_checkpoint("default", "language"))
        else:
            from transformers import AutoModelForCausalLM

            from ivl_embodied.checkpoints.tiny import internvl3_5_1b_config
            from ivl_embodied.vision.encoder import VisionEncoder, VisionEncoderConfig

            cfg = internvl3_5_1b_config()
            self.max_tiles = tiles or 1
            self.size = (448, 448 * self.max_tiles)  # one row of square tiles
            torch.manual_seed(0)
            if side in ("both", "vision"):
                self.encoder = VisionEncoder(VisionEncoderConfig(cfg.vision_config,
                                                                 cfg.text_config.hidden_size)).eval()
            if side in ("both", "language"):
                from ivl_embodied.language.fast_decode import StaticDecoder

                self.lm = AutoModelForCausalLM.from_config(cfg.text_config).eval()
                self.decoder = StaticDecoder(self.lm)
                self.text = self.lm.get_input_embeddings()(torch.randint(0, 1000, (48,)))  # [48, H]

    def frame(self, i: int) -> np.ndarray:
        return np.random.default_rng(i).integers(0, 256, (*self.size, 3), dtype=np.uint8)

    @torch.no_grad()
    def encode(self, i: int):
        from ivl_embodied.vision.encoder import encode_image

        return encode_image(self.encoder, self.frame(i), max_tiles=self.max_tiles)

    @torch.no_grad()
    def plan(self, visual) -> int:
        """Plan from ``visual`` (``VisualEmbeddings``); returns the number of generated tokens."""
        if self.config == "shipped":
            from ivl_embodied.language.planner import GenerationSettings

            return len(self.planner.generate(visual, INSTRUCTION, GenerationSettings(max_new_tokens=160)).token_ids)
        emb = torch.cat([visual.embeddings.to(self.text.dtype), self.text])[None]
        table = self.lm.get_input_embeddings()
        self.decoder.reserve(emb.shape[1] + self.new_tokens)
        logits = self.decoder.prefill(emb)
        for _ in range(self.new_tokens):
            logits = self.decoder.step(int(logits.argmax()), table)
        return self.new_tokens


# --------------------------------------------------------------------------- runs


def serial(stages: Stages, requests: int) -> dict:
    stages.plan(stages.encode(requests))  # warm-up (another frame)
    v, lang, tokens = [], [], []
    t0 = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        emb = stages.encode(i)
        v.append(time.perf_counter() - t)
        t = time.perf_counter()
        tokens.append(stages.plan(emb))
        lang.append(time.perf_counter() - t)
    return {"wall_s": time.perf_counter() - t0, "vision_s": statistics.mean(v), "language_s": statistics.mean(lang),
            "tokens": tokens, "visual_tokens": int(emb.embeddings.shape[0])}


def _vision_child(spec: str) -> int:
    """The pipelined run's vision process: encode every frame, publish each, report its start time."""
    from ivl_embodied.transport import QosProfile, make_node
    from ivl_embodied.transport.convert import payload_to_msg

    args = json.loads(spec)
    torch.set_num_threads(args["threads"])
    stages = Stages(args["config"], args["tiles"], args["new_tokens"], side="vision")
    stages.encode(args["requests"])  # warm-up
    node = make_node("dvd_vision", rosout=False)
    pub = node.create_publisher(TYPE, TOPIC, QosProfile("reliable", max(1, args["requests"]), "volatile"))
    node.wait_for_subscribers(TOPIC, timeout=60.0)
    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    t0 = time.monotonic()
    print(json.dumps({"t0": t0}), flush=True)
    encode_s = []
    for i in range(args["requests"]):
        t = time.perf_counter()
        emb = stages.encode(i)
        encode_s.append(time.perf_counter() - t)
        pub.publish(payload_to_msg(emb.to_payload("bf16"), time.time_ns(), str(i)))
    print(json.dumps({"encode_s": encode_s}), flush=True)
    node.spin_until(lambda: False, 2.0)  # let the reliable protocol deliver the last one
    node.shutdown()
    return 0


def pipelined(stages: Stages, config: str, requests: int, tiles: int, new_tokens: int, threads: int,
              timeout: float) -> dict:
    from ivl_embodied.embeddings.payload import VisualEmbeddings
    from ivl_embodied.transport import QosProfile, make_node
    from ivl_embodied.transport.convert import msg_to_payload

    stages.plan(stages.encode(requests))  # warm the language side (its own encoder is not used below)
    inbox: list[Any] = []
    node = make_node("dvd_planner", rosout=False)
    node.create_subscription(TYPE, TOPIC, inbox.append, QosProfile("reliable", max(1, requests), "volatile"))
    spec = json.dumps({"config": config, "requests": requests, "tiles": tiles, "new_tokens": new_tokens,
                       "threads": threads})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    child = subprocess.Popen([sys.executable, "-m", "ivl_embodied.bench.dvd", "--_vision-child", spec],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    lines = JsonLines(child, "the vision process")
    try:
        deadline = time.monotonic() + timeout
        lines.expect("ready", timeout=120.0)
        node.wait_for_publishers(TOPIC, timeout=60.0)
        child.stdin.write("go\n")
        child.stdin.flush()
        t0 = lines.expect("t0", timeout=30.0)["t0"]
        tokens, plan_s = [], []
        while len(tokens) < requests:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(tokens)} of {requests} plans after {timeout:.0f} s")
            if not inbox:
                node.spin_once(0.01)
                continue
            msg = inbox.pop(0)
            t = time.perf_counter()
            tokens.append(stages.plan(VisualEmbeddings.from_payload(msg_to_payload(msg))))
            plan_s.append(time.perf_counter() - t)
        wall = time.monotonic() - t0
        encode_s = lines.expect("encode_s", timeout=max(1.0, deadline - time.monotonic()))["encode_s"]
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        node.shutdown()
    return {"wall_s": wall, "tokens": tokens, "vision_s": statistics.mean(encode_s),
            "language_s": statistics.mean(plan_s)}


def bench_config(config: str, args: argparse.Namespace) -> dict:
    d = DEFAULTS[config]
    requests = args.requests or d["requests"]
    repeats = args.repeats or d["repeats"]
    tiles, new_tokens = args.tiles or d["tiles"], args.new_tokens or d["new_tokens"]
    stages = Stages(config, tiles, new_tokens)
    threads = args.serial_threads or os.cpu_count() or 1
    all_cores = args.serial_threads >= 0 and threads != args.stage_threads
    runs: dict[str, list[dict]] = {"serial": [], "pipelined": [], "all_cores": []}
    for r in range(repeats):  # the three runs one after the other, repeat by repeat: noise hits them alike
        torch.set_num_threads(args.stage_threads)
        runs["serial"].append(serial(stages, requests))
        runs["pipelined"].append(pipelined(stages, config, requests, tiles, new_tokens, args.stage_threads,
                                           args.timeout))
        if all_cores:
            torch.set_num_threads(threads)
            runs["all_cores"].append(serial(stages, requests))
        logger.info("%s: repeat %d/%d: serial %.1f s, pipelined %.1f s", config, r + 1, repeats,
                    runs["serial"][-1]["wall_s"], runs["pipelined"][-1]["wall_s"])

    def med(kind: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[kind])

    v, lang = med("serial", "vision_s"), med("serial", "language_s")
    serial_s, pipe_s = med("serial", "wall_s"), med("pipelined", "wall_s")
    result = {
        "config": config, "requests": requests, "repeats": repeats, "max_tiles": stages.max_tiles,
        "visual_tokens": runs["serial"][0]["visual_tokens"], "stage_threads": args.stage_threads,
        "vision_s_per_frame": round(v, 3), "language_s_per_frame": round(lang, 3),
        "serial_s": round(serial_s, 2), "pipelined_s": round(pipe_s, 2),
        "ratio": round(serial_s / pipe_s, 2),
        "ratio_per_repeat": [round(a["wall_s"] / b["wall_s"], 2) for a, b in zip(runs["serial"], runs["pipelined"],
                                                                                   strict=True)],
        "bound": round((v + lang) / max(v, lang), 2),
        "bound_n": round(requests * (v + lang) / (v + lang + (requests - 1) * max(v, lang)), 2),
        "plans_equal_in_length": all(a["tokens"] == b["tokens"] for a, b in zip(runs["serial"], runs["pipelined"],
                                                                                strict=True)),
        # the stages' own times inside the pipeline (each process runs one model only)
        "pipelined_vision_s_per_frame": round(med("pipelined", "vision_s"), 3),
        "pipelined_language_s_per_frame": round(med("pipelined", "language_s"), 3),
    }
    if all_cores:
        result["serial_all_cores"] = {"threads": threads, "serial_s": round(med("all_cores", "wall_s"), 2),
                                      "ratio": round(med("all_cores", "wall_s") / pipe_s, 2)}
    return result


def run(args: argparse.Namespace) -> int:
    if args.vision_child:
        return _vision_child(args.vision_child)
    names = list(DEFAULTS) if args.config == "all" else [args.config]
    results = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__},
               "results": [bench_config(n, args) for n in names]}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results["results"]:
        line = (f"{r['config']}: {r['requests']} frames, {r['visual_tokens']} visual tokens each; vision "
                f"{r['vision_s_per_frame']} s + language {r['language_s_per_frame']} s per frame; serial "
                f"{r['serial_s']} s, pipelined {r['pipelined_s']} s: {r['ratio']}x (stage-time bound {r['bound']}x, "
                f"{r['bound_n']}x for {r['requests']} frames); in the pipeline: vision "
                f"{r['pipelined_vision_s_per_frame']} s + language {r['pipelined_language_s_per_frame']} s per frame")
        if "serial_all_cores" in r:
            s = r["serial_all_cores"]
            line += f"; serial on {s['threads']} threads {s['serial_s']} s: {s['ratio']}x"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivl_embodied.bench.dvd", description=__doc__.split("\n")[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
