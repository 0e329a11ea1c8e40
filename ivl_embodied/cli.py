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
    "record": ("ivl_embodied.nodes.recorder_node", "record the graph's topics to MCAP (ROS 2 profile)"),
    "console": ("ivl_embodied.nodes.console_node", "the operator console: a web page to type tasks, watch, e-stop"),
    "replay": ("ivl_embodied.replay", "plan again from a recording's visual embeddings"),
    "bench": ("ivl_embodied.bench.cli", "benchmarks: transport, model, sim"),
    "checkpoint": ("ivl_embodied.checkpoints.cli", "inspect and split InternVL checkpoints"),
    "export": ("ivl_embodied.export.cli", "export the vision side to ONNX / TensorRT engines"),
    "sim-eval": ("ivl_embodied.sim.eval_cli", "evaluate a planner on a task suite in the simulator"),
    "gazebo-world": ("ivl_embodied.sim.gazebo", "write a task's scene as a Gazebo (gz-sim) world"),
    "train": ("ivl_embodied.train.cli", "Cascade RL: data, sft, mpo, gspo, vico, router, recipe"),
    "security": ("ivl_embodied.transport.security", "DDS Security: keystore, per-node permissions (SROS2 layout)"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivl-embodied", description="ivl_embodied: embodied-agent stack on InternVL3.5's ideas"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_lazy_subcommands(parser, "command", COMMANDS, argv, "_run")
    return parser


def add_lazy_subcommands(parser: argparse.ArgumentParser, dest: str, table: dict[str, tuple[str, str]],
                         argv: list[str], run_attr: str) -> None:
    """Subcommands ``{name: (module, help)}``; only the one named in ``argv`` is imported, its
    ``add_arguments`` called and its ``run`` stored as ``args.<run_attr>``. A module with
    ``WANTS_ARGV = True`` gets the arguments after its name (to choose its own subcommand)."""
    sub = parser.add_subparsers(dest=dest, metavar=dest.upper())
    sub.required = True
    chosen = next((a for a in argv if a in table), None)
    for name, (module, help_text) in table.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            if getattr(mod, "WANTS_ARGV", False):
                mod.add_arguments(p, argv[argv.index(name) + 1 :])
            else:
                mod.add_arguments(p)
            p.set_defaults(**{run_attr: mod.run})


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
