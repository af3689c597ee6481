"""Latency measurement shared by ``verify`` and ``bench``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Timing", "measure"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock figures of one batch size."""

    batch: int
    median_ms: float
    p90_ms: float
    runs: int

    @property
    def images_per_second(self) -> float:
        """Throughput at this batch size."""
        return 1000.0 * self.batch / self.median_ms


def measure(
    run: Callable[[], object], *, batch: int, warmup: int = 3, runs: int = 20, budget_s: float = 20.0
) -> Timing:
    """Time ``run`` after ``warmup`` calls; stops early once ``budget_s`` is spent."""
    for _ in range(warmup):
        run()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < runs and (len(samples) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000.0)
    values = np.asarray(samples)
    return Timing(batch, float(np.median(values)), float(np.percentile(values, 90)), len(values))
