"""``ivl-embodied train {data,sft,mpo,gspo,vico,router,recipe}``: the Cascade RL pipeline.

Each stage lives in its own module with ``add_arguments(parser)`` / ``run(args)``; only the
chosen stage is imported (``train --help`` imports none: torch alone takes seconds).
"""

from __future__ import annotations

import argparse

# stage -> (module, one-line help)
STAGES: dict[str, tuple[str, str]] = {
    "data": ("ivl_embodied.train.data", "render images + instructions + oracle plans from the simulator (cached)"),
    "sft": ("ivl_embodied.train.sft", "supervised fine-tuning of the whole model (ViT + projector + LLM)"),
    "mpo": ("ivl_embodied.train.mpo", "offline RL with MPO (DPO-sigmoid + BCO-pair + SFT)"),
    "gspo": ("ivl_embodied.train.gspo", "online RL with GSPO (sequence-level ratios, simulator rewards)"),
    "vico": ("ivl_embodied.train.vico", "ViCO consistency training of the compressed (64-token) path"),
    "router": ("ivl_embodied.train.router", "train the Visual Resolution Router from ViCO loss-ratio labels"),
    "recipe": ("ivl_embodied.train.recipe",
               "run a typed multi-stage recipe (default-planner: the shipped planner; ci: tiny, minutes)"),
}

WANTS_ARGV = True  # cli.py passes the remaining argv so that only the chosen stage is imported


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    from ivl_embodied.cli import add_lazy_subcommands

    add_lazy_subcommands(parser, "stage", STAGES, argv or [], "_stage")


def run(args: argparse.Namespace) -> int:
    return int(args._stage(args) or 0)
