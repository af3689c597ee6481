"""Where a training run stands, and what follows from it: the learning rate and the input side.

A run's progress goes from 0 to 1, by optimizer steps (``epochs`` of them)
or, with a time budget, by the clock, whichever is further along; the run
ends at 1, in the middle of an epoch if the clock says so. So a budgeted run
uses its minutes whatever each step costs, and its schedule ends when they do.

- The learning rate is a linear warm-up over the first steps times a cosine
  over the progress, down to ``min_ratio``.
- Progressive resizing: the input side grows from a fraction of the image
  size to all of it by three quarters of the run, in multiples of the
  model's map stride (so map cells stay aligned). The early steps, which
  learn coarse features, cost a fraction of a full-size step; the last
  quarter trains at the size the model will see.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["RAMP_END", "StepPlan", "TrainingSchedule"]

RAMP_END = 0.75  # progress at which the input reaches its full size


@dataclass(frozen=True)
class StepPlan:
    """What the next optimizer step does: its rate factor and its input side."""

    lr_factor: float
    image_side: int


class TrainingSchedule:
    """The run's progress by steps and clock, the rate factor and the input side that follow.

    Args:
        total_steps: steps in ``epochs`` epochs; the run ends there at the latest.
        warmup_steps: steps of linear warm-up.
        image_size: the model's input side.
        start_ratio: progressive resizing starts at this fraction of ``image_size``; 1 = off.
        multiple: sides before the full size are multiples of this (the model's map stride).
        budget_s: seconds the run may take from its first step (evaluation included), or None.
        min_ratio: the rate factor at the end of the cosine.
        agree: turns this process's progress into the one every process uses (the
            maximum under torchrun), so all step, resize and stop together.
        clock: seconds from an arbitrary start (``time.monotonic``).
    """

    def __init__(
        self,
        *,
        total_steps: int,
        warmup_steps: int,
        image_size: int,
        start_ratio: float = 1.0,
        multiple: int = 16,
        budget_s: float | None = None,
        min_ratio: float = 0.01,
        agree: Callable[[float], float] = lambda progress: progress,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total_steps < 1:
            raise ValueError("total_steps must be at least 1")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.image_size = image_size
        self.start_ratio = start_ratio
        self.multiple = multiple
        self.budget_s = budget_s
        self.min_ratio = min_ratio
        self._agree = agree
        self._clock = clock
        self.steps = 0
        self._elapsed_before = 0.0
        self._started: float | None = None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the first step, over every session of a resumed run."""
        running = 0.0 if self._started is None else self._clock() - self._started
        return self._elapsed_before + running

    def progress(self) -> float:
        """How far the run is, 0 to 1 (agreed between processes)."""
        by_steps = self.steps / self.total_steps
        by_clock = self.elapsed_s / self.budget_s if self.budget_s else 0.0
        return min(1.0, self._agree(max(by_steps, by_clock)))

    def over(self) -> bool:
        """Whether the run has used its steps or its time."""
        return self.progress() >= 1.0

    def next_step(self) -> StepPlan | None:
        """The plan for one more step, or None when the run is over."""
        if self._started is None:
            self._started = self._clock()
        progress = self.progress()
        if progress >= 1.0:
            return None
        self.steps += 1
        return StepPlan(self.lr_factor(self.steps, progress), self.image_side(progress))

    def lr_factor(self, step: int, progress: float) -> float:
        """Warm-up by step (1-based) times the cosine at ``progress``."""
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        return warm * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def image_side(self, progress: float) -> int:
        """The input side at ``progress``: ramped, rounded down to ``multiple``, full from ``RAMP_END``."""
        if self.start_ratio >= 1.0 or progress >= RAMP_END:
            return self.image_size
        start = self.image_size * self.start_ratio
        side = start + (self.image_size - start) * progress / RAMP_END
        return min(self.image_size, max(self.multiple, int(side) // self.multiple * self.multiple))

    def state_dict(self) -> dict[str, Any]:
        """What ``--resume`` needs: steps taken and seconds spent."""
        return {"steps": self.steps, "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; the clock restarts at the next step."""
        self.steps = int(state["steps"])
        self._elapsed_before = float(state["elapsed_s"])
        self._started = None
