"""The ``ivl-embodied`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen one is imported, so ``ivl-embodied --help``
stays fast and a missing optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ivl_embodied.demo", "run the whole stack on the simulated robot"),
    "launch": ("ivl_embodied.launcher", "start a node graph without ROS 2 (ROS-free launcher)"),
    "bench": ("ivl_embodied.bench", "benchmarks: transport, model, sim"),
    "checkpoint": ("ivl_embodied.model.checkpoint_cli", "inspect and split InternVL checkpoints"),
    "export": ("ivl_embodied.export.cli", "export the vision side to ONNX / TensorRT engines"),
    "sim-eval": ("ivl_embodied.sim.eval_cli", "evaluate a planner on a task suite in the simulator"),
    "train": ("ivl_embodied.rl.cli", "Cascade RL: data, sft, mpo, gspo, vico, router, cascade"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivl-embodied", description="ivl_embodied: embodied-agent stack on InternVL3.5's ideas"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            if getattr(mod, "WANTS_ARGV", False):
                mod.add_arguments(p, argv[argv.index(name) + 1 :])
            else:
                mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
