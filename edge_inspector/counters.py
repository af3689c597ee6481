"""Counters the agent reports in ``status`` and, through :mod:`edge_inspector.metrics`, to Prometheus."""

from __future__ import annotations

import threading
import time
from collections import Counter

__all__ = ["Counters"]


class Counters:
    """Frames inferred, verdicts by label, reloads; and when frames last moved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.last_inference = time.monotonic()

    def add(self, name: str, amount: int = 1) -> None:
        """Increase a counter."""
        with self._lock:
            self._counts[name] += amount

    def inferred(self, labels: list[str]) -> None:
        """Record a micro-batch that went through inference."""
        with self._lock:
            self._counts["inferred"] += len(labels)
            for label in labels:
                self._counts[f"verdicts.{label}"] += 1
            self.last_inference = time.monotonic()

    def snapshot(self) -> dict[str, int]:
        """A copy of the counters."""
        with self._lock:
            return dict(self._counts)

    def uptime(self) -> float:
        """Seconds since start."""
        return time.monotonic() - self.started

    def idle_for(self) -> float:
        """Seconds since a frame last went through inference."""
        return time.monotonic() - self.last_inference
