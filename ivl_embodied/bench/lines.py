"""A benchmark's child processes report JSON lines on stdout; the parent waits for each with a timeout."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time


class JsonLines:
    """JSON lines from a child's stdout, read on a thread so every wait can time out."""

    def __init__(self, proc: subprocess.Popen, name: str):
        self.q: queue.Queue = queue.Queue()
        self.name = name
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                self.q.put(json.loads(line))
        self.q.put(None)

    def expect(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {key!r} within {timeout:.0f} s")
            try:
                obj = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if obj is None:
                raise RuntimeError(f"{self.name} exited before reporting {key!r}")
            if "error" in obj:
                raise RuntimeError(obj["error"])
            if key in obj:
                return obj
