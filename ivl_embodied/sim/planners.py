"""Planner factory: ``make_planner(name)``.

A planner has ``plan(rgb [H, W, 3] uint8, instruction) -> plan text`` and optionally
``reset(task, world)`` (the oracle uses it to see sim state; learned planners ignore it).
``oracle`` is built in; any other name (``default``, a checkpoint directory) is handed to
``ivl_embodied.model`` lazily, which provides ``make_planner(name)`` once the model lands.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np


class Planner(Protocol):
    def plan(self, rgb: np.ndarray, instruction: str) -> str: ...


class PlannerNotAvailable(RuntimeError):
    pass


def make_planner(name: str, **options) -> Planner:
    """``oracle``, or a learned planner; ``options`` (e.g. ``vir``, ``device``) go to the latter."""
    if name == "oracle":
        from ivl_embodied.sim.oracle import OraclePlanner

        return OraclePlanner()
    try:
        model = importlib.import_module("ivl_embodied.model")
    except ImportError as e:
        raise PlannerNotAvailable(f"planner {name!r} is not available: ivl_embodied.model failed to import ({e})") from e
    factory = getattr(model, "make_planner", None)
    if factory is None:
        raise PlannerNotAvailable(
            f"planner {name!r} is not available: ivl_embodied.model has no make_planner() yet; "
            "use --planner oracle")
    return factory(name, **options)
