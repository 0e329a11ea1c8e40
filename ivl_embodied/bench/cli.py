"""``ivl-embodied bench NAME``: benchmarks whose numbers go into the README.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``;
only the chosen one is imported.
"""

from __future__ import annotations

import argparse

BENCHES: dict[str, tuple[str, str]] = {
    "transport": ("ivl_embodied.bench.transport", "DDS vs TCP latency/throughput on loopback"),
    "model": ("ivl_embodied.bench.model", "vision ms/tile, planner prefill ms and decode tok/s"),
    "planner": ("ivl_embodied.bench.planner", "planner decoding vs transformers generate (shipped, Qwen3-0.6B)"),
    "dvd": ("ivl_embodied.bench.dvd", "serial vs pipelined vision and language over our transport (DvD)"),
    "vision-runtime": ("ivl_embodied.bench.runtime", "vision ms/tile: torch vs onnxruntime"),
    "sim": ("ivl_embodied.bench.sim", "physics steps/s, render fps, wall time per episode"),
    "load": ("ivl_embodied.bench.load", "the demo graph on a busy machine: threads by placement vs all cores"),
    "two-hosts": ("ivl_embodied.bench.two_hosts", "3.7 MB embeddings between two network namespaces under loss (root)"),
}

WANTS_ARGV = True  # cli.py passes the remaining argv so we import only the chosen bench


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    from ivl_embodied.cli import add_lazy_subcommands

    add_lazy_subcommands(parser, "bench", BENCHES, argv or [], "_bench_run")


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
