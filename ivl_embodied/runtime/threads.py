"""How many CPU threads a node's compute may use: its share of the cores, not all of them.

Each node process sizes torch (and OpenMP/BLAS) to *all* cores by default, so four co-located nodes
on a 2-core machine run 8+ compute threads on 2 cores. Measured on such a machine under load
(issue 18): task → plan took 10.7 s and 3 of 3 tasks were rejected for a missing frame; with one
thread per node the same task planned in 0.45 s and succeeded 3 of 3.

The launcher (and the demo, and the ROS 2 launch files) divide the cores a graph may use between the
nodes it starts on one machine (:func:`shares`) and give each its share in ``$IVL_CPU_SHARE`` (and
``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, read by the native libraries when they load). A node's
``threads`` parameter, when > 0, overrides its share.
"""

from __future__ import annotations

import logging
import os

LOG = logging.getLogger(__name__)
SHARE_ENV = "IVL_CPU_SHARE"
COMPUTE_NODES = ("vision_node", "planner_node")
"""Nodes whose compute (a neural network) scales with threads; the others get one thread each."""
NATIVE_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which cgroups and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def shares(names: list[str] | tuple[str, ...], cores: int | None = None) -> dict[str, int]:
    """Threads per node for ``names`` started together on one machine of ``cores`` cores: the
    compute nodes split the cores evenly (at least one each), every other node gets one."""
    cores = available_cores() if cores is None else int(cores)
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores!r}")
    compute = [n for n in names if n in COMPUTE_NODES]
    each = max(1, cores // len(compute)) if compute else 1
    return {n: each if n in COMPUTE_NODES else 1 for n in names}


def share_env(threads: int) -> dict[str, str]:
    """The environment that gives a child process ``threads`` threads."""
    return {SHARE_ENV: str(threads), **{k: str(threads) for k in NATIVE_ENVS}}


def describe(assigned: dict[str, int], cores: int) -> str:
    return f"{cores} core(s): " + ", ".join(f"{n} {t} thread(s)" for n, t in assigned.items())


def node_threads(requested: int = 0) -> int:
    """Threads for this node: ``requested`` when > 0, else ``$IVL_CPU_SHARE``, else every core."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"threads must be an int >= 0 (0: this node's share of the cores), got {requested!r}")
    if requested:
        return requested
    raw = os.environ.get(SHARE_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"${SHARE_ENV} must be an integer, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"${SHARE_ENV} must be >= 1, got {value}")
        return value
    return available_cores()


def configure_torch(requested: int = 0) -> int:
    """Size torch's intra-op pool to :func:`node_threads` (inter-op: one); returns the count."""
    import torch

    threads = node_threads(requested)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already started (set once per process)
        pass
    return threads
