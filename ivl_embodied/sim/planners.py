"""Planner factory: ``make_planner(name)``.

A planner has ``plan(rgb [H, W, 3] uint8, instruction) -> plan text`` and optionally
``reset(task, world)`` (the oracle uses it to see sim state; learned planners ignore it).
``oracle`` is built in; any other name (``default``, a checkpoint directory) is handed to
:func:`ivl_embodied.checkpoints.planner.make_planner`, imported only then.
"""

from __future__ import annotations

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
        from ivl_embodied.checkpoints.planner import make_planner as make_model_planner
    except ImportError as e:
        raise PlannerNotAvailable(f"planner {name!r} is not available: the model stack failed to import ({e})") from e
    return make_model_planner(name, **options)


class FixedPlanner:
    """A planner that answers one given plan text, whatever it sees (RL rewards, MPO candidates)."""

    def __init__(self, text: str):
        self.text = text

    def plan(self, rgb: np.ndarray, instruction: str) -> str:
        return self.text
