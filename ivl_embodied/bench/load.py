"""``ivl-embodied bench load``: the demo's four-node graph on a machine that is busy with other work.

Runs ``ivl-embodied demo`` (default planner, held-out tasks) while ``--busy`` processes spin on the
CPU, once with threads by placement (each node its share of the cores: ``runtime/threads.py``) and
once with every node sizing its thread pools to every core (``IVL_THREADS_BY_PLACEMENT=0``, what
the nodes did before), and reports per mode: how long each task took from being sent to being
planned (the operator's view), how many were rejected for a missing camera frame, and how many
succeeded. The modes run one after the other on the same machine, same tasks, same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"placement": "1", "all-cores": "0"}
NO_FRAME = "no RGB-D frame"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="held-out task indices")
    parser.add_argument("--busy", type=int, default=2, help="processes spinning on the CPU meanwhile")
    parser.add_argument("--modes", default="placement,all-cores", help=f"comma-separated, of {sorted(MODES)}")
    parser.add_argument("--plan-within", type=float, default=1.5, help="seconds: the target for task -> plan")
    parser.add_argument("--timeout", type=float, default=300.0, help="per task (demo --timeout)")
    parser.add_argument("--out", type=Path, default=None, help="keep the demo outputs here")
    parser.add_argument("--json", action="store_true")


def run_mode(mode: str, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "IVL_THREADS_BY_PLACEMENT": MODES[mode]}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    t0 = time.monotonic()
    try:
        res = subprocess.run([sys.executable, "-m", "ivl_embodied.cli", "demo", "--out", str(out), "--timeout",
                              str(args.timeout), "--tasks", *map(str, args.tasks)], env=env, capture_output=True,
                             text=True, timeout=args.timeout * len(args.tasks) + 300)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        raise RuntimeError(f"demo ({mode}) wrote no summary (exit {res.returncode}):\n{res.stdout[-3000:]}")
    tasks = json.loads(summary_file.read_text())["tasks"]
    plans = [t.get("plan_s") for t in tasks]
    planned = [p for p in plans if p is not None]
    return {
        "mode": mode, "tasks": len(tasks), "wall_s": round(time.monotonic() - t0, 1),
        "plan_s": plans, "plan_s_median": round(statistics.median(planned), 2) if planned else None,
        "plan_s_max": max(planned) if planned else None,
        "planned_within": sum(p is not None and p <= args.plan_within for p in plans),
        "rejected_no_frame": sum(NO_FRAME in (t.get("message") or "") for t in tasks),
        "succeeded": sum(bool(t.get("ok")) for t in tasks),
        "statuses": [t.get("status") for t in tasks],
    }


def run(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        print(f"error: unknown mode(s) {unknown or modes}; choose from {sorted(MODES)}", file=sys.stderr)
        return 2
    from ivl_embodied.runtime.threads import available_cores

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        rows = [run_mode(m, args, root / m) for m in modes]
    report = {"cores": available_cores(), "busy_processes": args.busy, "plan_within_s": args.plan_within,
              "task_indices": args.tasks, "modes": rows}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['cores']} cores, {args.busy} busy processes, held-out tasks {args.tasks}")
    within = f"planned <= {args.plan_within:.1f} s"
    print(f"{'mode':<10} {within:>17} {'median s':>9} {'max s':>7} "
          f"{'no-frame rejections':>20} {'succeeded':>10} {'wall s':>7}")
    for r in rows:
        print(f"{r['mode']:<10} {r['planned_within']:>11}/{r['tasks']:<5} {r['plan_s_median'] or '-':>9} "
              f"{r['plan_s_max'] or '-':>7} {r['rejected_no_frame']:>20} {r['succeeded']:>6}/{r['tasks']:<3} "
              f"{r['wall_s']:>7}")
    return 0
