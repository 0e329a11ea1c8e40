"""``ivl-embodied bench NAME``: benchmarks whose numbers go into the README.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``;
only the chosen one is imported.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES: dict[str, tuple[str, str]] = {
    "transport": ("ivl_embodied.transport.bench", "DDS vs TCP latency/throughput on loopback"),
    "model": ("ivl_embodied.model.bench", "vision ms/tile, planner prefill ms and decode tok/s"),
    "vision-runtime": ("ivl_embodied.runtime.bench", "vision ms/tile: torch vs onnxruntime"),
    "sim": ("ivl_embodied.sim.bench", "physics steps/s, render fps, wall time per episode"),
}

WANTS_ARGV = True  # cli.py passes the remaining argv so we import only the chosen bench


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    sub.required = True
    chosen = next((a for a in (argv or []) if a in BENCHES), None)
    for name, (module, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_bench_run=mod.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
