"""A task's final states, and the refusals a client asks again: shared by the nodes and the console.

State names are ``TaskStatus.STATE_*`` without the prefix, reasons its ``REASON_*`` values.
"""

from __future__ import annotations

TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED", "CANCELLED")

CAMERA_NOT_READY = frozenset({"no_embeddings", "stale_embeddings"})
"""Refusals that say the planner has no current view yet (its vision input just started, restarted, or
paused for a moment), not that the task is wrong: a client asks again a second later, a bounded number of
times, as an operator would. A scene that is still not current after that is reported as refused."""
CAMERA_RETRIES = 10  # how many times an operator's client asks again, 1 s apart
