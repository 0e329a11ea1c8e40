"""``ivl-embodied train cascade``: data → SFT → MPO → GSPO → ViCO → router, in order.

Each stage is the same command you would run by hand (its own ``add_arguments``/``run``), with
its output directory under ``--out`` and the previous stage's planner as its ``--init``:

    OUT/data  OUT/sft  OUT/mpo  OUT/gspo  OUT/vico  OUT/router   (the final planner)

A stage whose planner (or dataset manifest) is already in place is skipped, so an interrupted
cascade continues where it stopped; a stage interrupted mid-way resumes from its own last
checkpoint (``--resume``). ``--scale ci`` is a minutes-long run of tiny models that exercises
every stage end to end on a CPU; ``--scale default`` uses each stage's own defaults (the
default planner's recipe). ``--ship`` copies the final planner into the package, where
``--planner default`` finds it.

Then every learned stage is evaluated through the full loop (camera -> planner -> grounding ->
skills -> the task's success predicate, :func:`ivl_embodied.sim.eval_cli.evaluate`) on the
``val`` (first 50 tasks) and ``heldout`` (all 100) splits, with ViR off, or all-64 (``vico``) or
routed (``router``, the final planner):
``OUT/eval/<stage>-<split>-<vir>.json`` per run (kept, so a rerun only fills gaps) and the
table ``OUT/eval.md`` that the README quotes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
EVAL_EPISODES = {"ci": {"val": 1, "heldout": 1}, "default": {"val": 50, "heldout": 100}}  # heldout: all of it
# ViCO trains mlp2 only and the router stage the router only, so their all-256 path is GSPO's:
# they are evaluated where they differ, all-64 (ViCO) and routed (the final planner).
EVAL_VIR = {"sft": ("full",), "mpo": ("full",), "gspo": ("full",), "vico": ("compressed",), "router": ("auto",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="root directory of the whole cascade")
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--stop-before", choices=STAGE_ORDER[1:], default=None,
                        help="run the stages before this one only")
    parser.add_argument("--ship", action="store_true",
                        help="copy the final planner into ivl_embodied/default_planner")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="tasks per split in the closing evaluation (0: skip; default per scale: "
                             "50 val + 100 heldout, 1 + 1 at --scale ci)")


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
    if args.eval_episodes is not None and args.eval_episodes < 0:
        raise SystemExit(f"error: --eval-episodes must be >= 0, got {args.eval_episodes}")
    episodes = (EVAL_EPISODES[args.scale] if args.eval_episodes is None
                else {"val": args.eval_episodes, "heldout": args.eval_episodes})
    if all(episodes.values()):
        evaluate_stages(root, [s for s in stages if s != "data"], episodes, args.device)
    return 0


def evaluate_stages(root: Path, stages: list[str], episodes: dict[str, int], device: str = "auto") -> list[dict]:
    """Full-loop success of each stage's planner on val and heldout; writes ``eval/`` + ``eval.md``."""
    import json

    import torch

    from ivl_embodied.sim.eval_cli import evaluate
    from ivl_embodied.sim.tasks import load_split

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    workers = os.cpu_count() or 1  # episodes in parallel on the CPU (one process on CUDA)
    (root / "eval").mkdir(exist_ok=True)
    rows = []
    for stage in stages:
        for vir in EVAL_VIR[stage]:
            row = {"stage": stage, "vir": vir}
            for split in ("val", "heldout"):
                path = root / "eval" / f"{stage}-{split}-{vir}.json"
                if path.is_file() and json.loads(path.read_text()).get("episodes") == episodes[split]:
                    summary = json.loads(path.read_text())
                else:
                    summary, _ = evaluate(str(root / stage), load_split(split)[: episodes[split]], f"split:{split}",
                                          vir=vir, device=device, workers=workers)
                    path.write_text(json.dumps(summary, indent=2))
                logger.info("cascade eval: %s ViR %s %s: success %.1f%% (%d episodes)", stage, vir, split,
                            100 * summary["success_rate"], summary["episodes"])
                row[split] = summary
            rows.append(row)
    lines = ["| stage | ViR | val success | held-out success | visual tokens / image | 64-token tiles |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        v, h = r["val"], r["heldout"]
        tokens = f"{h['visual_tokens_per_image']:g} of {h['full_tokens_per_image']:g}"
        lines.append(f"| {r['stage']} | {r['vir']} | {v['success_rate']:.0%} ({v['episodes']}) | "
                     f"{h['success_rate']:.0%} ({h['episodes']}) | {tokens} | {h['compressed_tile_share']:.0%} |")
    (root / "eval.md").write_text("\n".join(lines) + "\n")
    logger.info("cascade eval table:\n%s", "\n".join(lines))
    return rows
