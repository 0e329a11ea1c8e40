"""Keep multi-MB message buffers on the heap instead of fresh ``mmap`` pages (glibc only).

Every multi-MB sample passes through several same-sized buffers per process: the serializer's
``bytearray`` and the DDS writer's copy on the sending side, Cyclone's reassembled sample, the
take copy and the Python ``bytes`` on the receiving side. glibc serves allocations above
``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and gives freed heap tops above ``M_TRIM_THRESHOLD``
back to the kernel; both make the next buffer of that size start on untouched pages, and
faulting in ~900 zeroed pages costs more than copying 3.7 MB (measured: serializing a 3.7 MB
embedding 2.4 ms → 0.7 ms, taking it 3.1 ms → 0.8 ms). glibc's adaptive threshold does not
help here: it raises the mmap threshold to the freed size but the trim threshold only to twice
that, and a few 3.7 MB buffers freed together exceed it.

:func:`tune` (called when a node is created) sets both thresholds once per process: mmap
32 MiB (glibc's maximum) and trim 64 MiB, the highest values glibc's adaptive logic could reach
by itself; the process then keeps up to 64 MiB of freed heap for reuse. It is a no-op off
glibc, and ``IVL_MALLOC_TUNE=0`` (or ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in
the environment, which glibc has applied already) leaves malloc alone. No effect on what is sent
or received.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

LOG = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc
TRIM_THRESHOLD = 64 * 1024 * 1024

_LOCK = threading.Lock()
_STATE: dict[str, bool] = {}


def tune() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True when they were set."""
    if "done" in _STATE:
        return _STATE["done"]
    with _LOCK:
        if "done" not in _STATE:
            _STATE["done"] = _tune()
    return _STATE["done"]


def _tune() -> bool:
    if os.environ.get("IVL_MALLOC_TUNE", "1") == "0":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False  # the user tuned glibc already
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
            return False  # musl & co.
        mallopt = libc.mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        # Order matters: setting either disables glibc's adaptive thresholds.
        ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError) as exc:  # pragma: no cover - unusual libc
        LOG.debug("mallopt unavailable: %s", exc)
        return False
    LOG.debug("glibc malloc: mmap threshold %d, trim threshold %d (%s)", MMAP_THRESHOLD, TRIM_THRESHOLD,
              "set" if ok else "refused")
    return ok
