"""An exponential moving average of the weights, the model that is evaluated and kept.

Training from scratch on a few hundred images at a high learning rate makes
the raw weights, and above all the BatchNorm statistics, jump from step to
step; their average moves smoothly. The average covers every parameter and
buffer, so BatchNorm's running statistics are averaged with the weights they
belong to.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage", "half_life_decay"]


def half_life_decay(half_life_steps: float) -> float:
    """The per-step decay under which a weight's share halves after ``half_life_steps`` steps."""
    return 0.5 ** (1.0 / half_life_steps) if half_life_steps > 0 else 0.0


class WeightAverage:
    """An EMA copy of ``model``, moved towards it after every optimizer step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so the first steps' random weights do not linger in the average.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.source = model
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the source model's current weights and buffers."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, new in zip(self.model.state_dict().values(), self.source.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(new, 1.0 - decay)
            else:  # BatchNorm's batch counter
                avg.copy_(new)
