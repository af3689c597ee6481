"""Counters the agent and each camera report in ``status`` and, through :mod:`edge_inspector.metrics`, to Prometheus."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable

__all__ = ["Counters"]


class Counters:
    """Named counts (those in ``names`` shown from 0), verdicts by label, and when frames last went through
    inference. Thread-safe."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter(dict.fromkeys(names, 0))
        self._verdicts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.last_inference = time.monotonic()

    def add(self, name: str, amount: int = 1) -> None:
        """Increase a counter."""
        with self._lock:
            self._counts[name] += amount

    def inferred(self, labels: list[str]) -> None:
        """Record a micro-batch's verdicts, by label."""
        with self._lock:
            self._counts["inferred"] += len(labels)
            self._verdicts.update(labels)
            self.last_inference = time.monotonic()

    def snapshot(self) -> dict[str, int]:
        """A copy of the named counts."""
        with self._lock:
            return dict(self._counts)

    def verdicts(self) -> dict[str, int]:
        """Verdicts so far, by label."""
        with self._lock:
            return dict(self._verdicts)

    def uptime(self) -> float:
        """Seconds since start."""
        return time.monotonic() - self.started

    def idle_for(self) -> float:
        """Seconds since a frame last went through inference."""
        return time.monotonic() - self.last_inference
