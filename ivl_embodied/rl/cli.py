"""``ivl-embodied train {data,sft,mpo,gspo,vico,router,cascade}``: the Cascade RL pipeline.

Each stage lives in its own module with ``add_arguments(parser)`` / ``run(args)``; only the
chosen stage is imported. Stages not built yet say so and exit with status 2 — they never
pretend to train.
"""

from __future__ import annotations

import argparse
import importlib
import logging

logger = logging.getLogger(__name__)

# stage -> (module or None when not implemented yet, one-line help)
STAGES: dict[str, tuple[str | None, str]] = {
    "data": ("ivl_embodied.rl.data", "render images + instructions + oracle plans from the simulator (cached)"),
    "sft": ("ivl_embodied.rl.sft", "supervised fine-tuning of the whole model (ViT + projector + LLM)"),
    "mpo": ("ivl_embodied.rl.mpo", "offline RL with MPO (DPO-sigmoid + BCO-pair + SFT)"),
    "gspo": ("ivl_embodied.rl.gspo", "online RL with GSPO (sequence-level ratios, simulator rewards)"),
    "vico": ("ivl_embodied.rl.vico", "ViCO consistency training of the compressed (64-token) path"),
    "router": ("ivl_embodied.rl.router", "train the Visual Resolution Router from ViCO loss-ratio labels"),
    "cascade": ("ivl_embodied.rl.cascade", "data -> sft -> mpo -> gspo -> vico -> router: produces the default planner"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    sub.required = True
    for name, (module, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if module is None:
            p.set_defaults(_stage=_not_implemented(name))
            continue
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_stage=mod.run)


def _not_implemented(name: str):
    def run(args: argparse.Namespace) -> int:
        logger.error("`train %s` is not implemented yet (issue 5); nothing was trained", name)
        return 2

    return run


def run(args: argparse.Namespace) -> int:
    return int(args._stage(args) or 0)
