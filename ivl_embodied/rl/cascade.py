"""``ivl-embodied train cascade``: data → SFT → MPO → GSPO → ViCO → router, in order.

Each stage is the same command you would run by hand (its own ``add_arguments``/``run``), with
its output directory under ``--out`` and the previous stage's planner as its ``--init``:

    OUT/data  OUT/sft  OUT/mpo  OUT/gspo  OUT/vico  OUT/router   (the final planner)

A stage whose planner (or dataset manifest) is already in place is skipped, so an interrupted
cascade continues where it stopped; a stage interrupted mid-way resumes from its own last
checkpoint (``--resume``). ``--scale ci`` is a minutes-long run of tiny models that exercises
every stage end to end on a CPU; ``--scale default`` uses each stage's own defaults (the
default planner's recipe; give it a GPU). ``--ship`` copies the final planner into the
package, where ``--planner default`` finds it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STAGE_ORDER = ("data", "sft", "mpo", "gspo", "vico", "router")

# Extra arguments per stage and scale; stage defaults apply to everything not listed.
SCALES: dict[str, dict[str, list[str]]] = {
    "ci": {
        "data": ["--episodes", "16", "--tile-size", "56", "--workers", "1"],
        "sft": ["--steps", "30", "--batch-size", "4", "--holdout", "4", "--eval-interval", "30",
                "--eval-examples", "2", "--checkpoint-interval", "15", "--vision-hidden", "32",
                "--vision-layers", "1", "--text-hidden", "32", "--text-layers", "1", "--warmup-steps", "5"],
        "mpo": ["--prompts", "2", "--samples", "1", "--steps", "3", "--batch-size", "2", "--holdout", "4",
                "--eval-interval", "3", "--eval-examples", "1", "--checkpoint-interval", "3"],
        "gspo": ["--steps", "2", "--group-size", "2", "--batch-size", "2", "--no-execute", "--holdout", "4",
                 "--eval-interval", "2", "--eval-examples", "1", "--checkpoint-interval", "2"],
        "vico": ["--steps", "4", "--batch-size", "2", "--holdout", "4", "--eval-interval", "4",
                 "--checkpoint-interval", "4"],
        "router": ["--steps", "10", "--batch-size", "4", "--holdout", "4", "--label-examples", "6",
                   "--eval-interval", "10", "--checkpoint-interval", "10"],
    },
    "default": {name: [] for name in STAGE_ORDER},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="root directory of the whole cascade")
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--stop-before", choices=STAGE_ORDER[1:], default=None,
                        help="run the stages before this one only")
    parser.add_argument("--ship", action="store_true",
                        help="copy the final planner into ivl_embodied/default_planner")
    parser.add_argument("--no-progress", action="store_true")


def _done(stage: str, out: Path) -> bool:
    if stage == "data":
        return (out / "manifest.json").is_file()
    return (out / "vision").is_dir() and (out / "language" / "config.json").is_file()


def _argv(stage: str, out: Path, root: Path, init: Path | None, args: argparse.Namespace) -> list[str]:
    argv = ["--out", str(out)] + SCALES[args.scale][stage]
    if stage == "data":
        return argv
    argv += ["--data", str(root / "data")]
    if init is not None:
        argv += ["--init", str(init)]
    argv += ["--device", args.device]
    if (out / "latest").exists():
        argv.append("--resume")
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def run(args: argparse.Namespace) -> int:
    root: Path = args.out
    root.mkdir(parents=True, exist_ok=True)
    stages = STAGE_ORDER[: STAGE_ORDER.index(args.stop_before)] if args.stop_before else STAGE_ORDER
    timings: dict[str, float] = {}
    init: Path | None = None
    for stage in stages:
        out = root / stage
        if _done(stage, out):
            logger.info("cascade: %s already done in %s; skipping", stage, out)
        else:
            module = importlib.import_module(f"ivl_embodied.rl.{stage}")
            parser = argparse.ArgumentParser(prog=f"ivl-embodied train {stage}")
            module.add_arguments(parser)
            argv = _argv(stage, out, root, init, args)
            logger.info("cascade: train %s %s", stage, " ".join(argv))
            t0 = time.perf_counter()
            rc = int(module.run(parser.parse_args(argv)) or 0)
            timings[stage] = round(time.perf_counter() - t0, 1)
            if rc != 0:
                logger.error("cascade: stage %s failed with exit status %d; later stages not run", stage, rc)
                return rc
            if not _done(stage, out):
                logger.error("cascade: stage %s finished but left no result in %s", stage, out)
                return 1
        if stage != "data":
            init = out
    logger.info("cascade: done in %s; stage wall times (s): %s", root, timings)
    if args.ship and init is not None:
        from ivl_embodied.model.agent import DEFAULT_PLANNER_DIR

        if DEFAULT_PLANNER_DIR.exists():
            shutil.rmtree(DEFAULT_PLANNER_DIR)
        for side in ("vision", "language"):
            shutil.copytree(init / side, DEFAULT_PLANNER_DIR / side)
        logger.info("cascade: shipped %s as the default planner (%s)", init, DEFAULT_PLANNER_DIR)
    return 0
