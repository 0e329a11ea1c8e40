"""How many processes the CPU-parallel loops use: evaluation episodes (``sim-eval --workers``),
MPO preference pairs (``--pair-workers``) and GSPO rewards (``--reward-workers``).

Each of those loops runs independent, deterministic simulated episodes, so its results do not
depend on the count; these helpers keep the rules for the count in one place."""
from __future__ import annotations

import os


def check_workers(workers: object) -> int:
    """``workers`` itself, if it is an int >= 1 (a bool is not); else ValueError naming it."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    return workers


def workers_from_flag(flag: str, requested: int) -> int:
    """A ``--*-workers`` command-line value: 0 means one process per CPU core; below 0 exits."""
    if requested < 0:
        raise SystemExit(f"error: {flag} must be >= 0, got {requested}")
    return requested or os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """torch threads for each of ``workers`` processes, so that together they fill the CPU once."""
    return max(1, (os.cpu_count() or 1) // check_workers(workers))
