"""``ivl-embodied sim-eval``: run a planner on a task suite in the simulator and report.

    ivl-embodied sim-eval --planner oracle --split heldout --episodes 50 --json
    ivl-embodied sim-eval --planner oracle --tasks my_tasks.jsonl --record runs/

The planner sees the camera image and the instruction and returns plan text; execution always
goes through the safety gate and depth-based grounding. Output: success rate, per-task-type rates,
failure reasons (counted by stage) and wall time.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time

from ivl_embodied.workers import check_workers, threads_per_worker

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planner", default="oracle", help="oracle | default | a checkpoint directory")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--split", default="heldout", choices=("train", "val", "heldout", "unseen_phrasing"))
    src.add_argument("--tasks", metavar="FILE.jsonl", help="evaluate on this task file instead of a split")
    parser.add_argument("--episodes", type=int, default=None, help="first N tasks (default: all)")
    parser.add_argument("--record", metavar="DIR", help="write an MP4 and a JSON trace per episode here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--robot", default="ivl_arm6",
                        help="the arm: a name of config/robots/ (ivl_arm6, panda, ur5e) or a robot YAML file")
    parser.add_argument("--details", action="store_true", help="include every episode in the JSON")
    parser.add_argument("--vir", choices=("full", "auto", "compressed"), default="full",
                        help="learned planners: Visual Resolution Router mode (all 256 / routed / all 64)")
    parser.add_argument("--device", default="cpu", help="learned planners: cpu | cuda")
    parser.add_argument("--workers", type=int, default=1,
                        help="run episodes in this many processes (CPU; each loads its own planner)")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="plans executed per task at most: a motion whose goal the scene check cannot verify "
                             "is retried from a fresh frame (1: no retry)")
    parser.add_argument("--no-checks", action="store_true",
                        help="no scene check before moving and no goal check after (measures what they cost; "
                             "SUCCEEDED then only means the steps ran)")


def summarize(results, wall_s: float, planner: str, source: str) -> dict:
    by_type: dict[str, list] = collections.defaultdict(list)
    reasons: collections.Counter = collections.Counter()
    failures = []
    for r in results:
        by_type[r.task.goal.type].append(r)
        if not r.success:
            reasons[r.stage] += 1
            failures.append({"seed": r.task.seed, "instruction": r.task.instruction, "status": r.status,
                             "attempts": r.attempts, "stage": r.stage, "reason": r.reason})
    n = len(results)
    executed = [r for r in results if r.attempts]
    return {
        "planner": planner, "tasks": source, "episodes": n,
        "success_rate": round(sum(r.success for r in results) / max(n, 1), 4),
        # the stack said SUCCEEDED but the simulator's predicate is false (must be 0)
        "false_success": sum(r.false_success for r in results),
        "first_attempt_success": round(sum(r.success and r.attempts == 1 for r in results) / max(n, 1), 4),
        "mean_attempts": round(sum(r.attempts for r in executed) / max(len(executed), 1), 3),
        "status_counts": dict(collections.Counter(r.status for r in results)),
        "per_type": {k: {"episodes": len(v), "success_rate": round(sum(r.success for r in v) / len(v), 4),
                         "first_attempt_success": round(sum(r.success and r.attempts == 1 for r in v) / len(v), 4),
                         "false_success": sum(r.false_success for r in v)}
                     for k, v in sorted(by_type.items())},
        "failure_stages": dict(reasons), "failures": failures,
        "wall_time_s": round(wall_s, 2),
        "mean_episode_wall_s": round(sum(r.wall_s for r in results) / max(n, 1), 3),
        "mean_episode_sim_s": round(sum(r.sim_s for r in results) / max(n, 1), 3),
    }


def _run_one(planner, task, record_dir, max_attempts: int = 1, checks: bool = True, robot: str = "ivl_arm6") -> tuple:
    """One episode with ``planner``: (result, the visual tokens of each tile it saw, tokens of a full tile)."""
    from ivl_embodied.robot.executor import ExecutorConfig
    from ivl_embodied.sim.episode import run_episode

    seen = len(getattr(planner, "tile_tokens", ()))
    config = ExecutorConfig() if checks else ExecutorConfig(check_scene=False, verify_goal=False)
    from ivl_embodied.sim.world import sim_arm

    result = run_episode(task, planner, record_dir=record_dir, max_attempts=max_attempts, config=config,
                         arm=sim_arm(robot))
    tiles = list(getattr(planner, "tile_tokens", ())[seen:])
    full = planner.encoder.config.tokens_full if tiles else None
    return result, tiles, full


_worker_planner = None  # one planner per evaluation worker process (or why it could not be made)


def _init_worker(planner_name: str, options: dict, threads: int) -> None:
    global _worker_planner
    import torch

    from ivl_embodied.sim.planners import make_planner

    torch.set_num_threads(threads)
    try:
        _worker_planner = make_planner(planner_name, **options)
    except Exception as e:  # raised from each episode instead: a failing initializer makes Pool respawn forever
        _worker_planner = e


def _worker_episode(job) -> tuple:
    if isinstance(_worker_planner, Exception):
        raise _worker_planner
    return _run_one(_worker_planner, *job)


def evaluate(planner_name: str, tasks, source: str, vir: str = "full", device: str = "cpu",
             record_dir=None, workers: int = 1, max_attempts: int = 1, checks: bool = True,
             robot: str = "ivl_arm6") -> tuple[dict, list]:
    """Run ``tasks`` with the planner ``planner_name`` (oracle | default | a directory); returns
    (:func:`summarize`'s dict, plus ViR token figures for learned planners; the episode results).

    ``workers > 1`` runs episodes in that many processes, each with its own planner (episodes
    are independent and deterministic, so the results are those of one process, in task order)."""
    from ivl_embodied.sim.planners import make_planner

    check_workers(workers)
    options = {} if planner_name == "oracle" else {"vir": vir, "device": device}
    tasks = list(tasks)
    workers = min(workers, len(tasks)) if device == "cpu" else 1
    t0 = time.perf_counter()
    if workers > 1:
        import multiprocessing as mp

        threads = threads_per_worker(workers)
        # spawn: a fresh interpreter per worker, so no GL context or torch threads are inherited
        with mp.get_context("spawn").Pool(workers, _init_worker, (planner_name, options, threads)) as pool:
            runs = list(pool.imap(_worker_episode, [(t, record_dir, max_attempts, checks, robot) for t in tasks]))
    else:
        planner = make_planner(planner_name, **options)
        runs = [_run_one(planner, t, record_dir, max_attempts, checks, robot) for t in tasks]
    results = [r for r, _, _ in runs]
    for i, r in enumerate(results):
        log.info("episode %d/%d seed %d %s: %s %s", i + 1, len(tasks), r.task.seed, r.task.goal.type,
                 "success" if r.success else "FAIL", r.reason)
    summary = summarize(results, time.perf_counter() - t0, planner_name, source)
    summary["robot"] = robot
    tiles = [t for _, per_episode, _ in runs for t in per_episode]  # per image: tokens of each tile
    if tiles:  # learned planner: how many visual tokens the language model saw
        flat = [t for per_image in tiles for t in per_image]
        full = next(f for _, _, f in runs if f is not None)
        summary["vir"] = vir
        summary["visual_tokens_per_image"] = round(sum(flat) / len(tiles), 2)
        summary["full_tokens_per_image"] = round(full * len(flat) / len(tiles), 2)
        summary["compressed_tile_share"] = round(sum(t < full for t in flat) / len(flat), 4)
    return summary, results


def run(args: argparse.Namespace) -> int:
    from ivl_embodied.sim.planners import PlannerNotAvailable
    from ivl_embodied.sim.tasks import TaskError, load_split, load_tasks

    try:
        tasks = load_tasks(args.tasks) if args.tasks else load_split(args.split)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.episodes is not None:
        if args.episodes < 1:
            print(f"error: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
            return 2
        tasks = tasks[: args.episodes]
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.max_attempts < 1:
        print(f"error: --max-attempts must be >= 1, got {args.max_attempts}", file=sys.stderr)
        return 2
    from ivl_embodied.sim.world import robot_error

    why = robot_error(args.robot)
    if why:
        print(f"error: --robot: {why}", file=sys.stderr)
        return 2
    try:
        summary, results = evaluate(args.planner, tasks, args.tasks or f"split:{args.split}", vir=args.vir,
                                    device=args.device, record_dir=args.record, workers=args.workers,
                                    max_attempts=args.max_attempts, checks=not args.no_checks, robot=args.robot)
    except PlannerNotAvailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.details:
        summary["episodes_detail"] = [r.to_dict() for r in results]
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['episodes']} episodes, success {summary['success_rate']:.1%} "
              f"(first attempt {summary['first_attempt_success']:.1%}, mean attempts {summary['mean_attempts']}), "
              f"false successes {summary['false_success']}, wall {summary['wall_time_s']} s")
        for k, v in summary["per_type"].items():
            print(f"  {k:9s} {v['success_rate']:.1%} of {v['episodes']}")
        for f in summary["failures"]:
            print(f"  FAIL seed {f['seed']} [{f['stage']}] {f['reason']}")
    return 0
