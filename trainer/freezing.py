"""Partial freezing by stage name."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from trainer.model import DefectNet

__all__ = ["count_parameters", "freeze_stages"]

log = logging.getLogger(__name__)


def freeze_stages(model: DefectNet, stages: Sequence[str]) -> None:
    """Stop gradients in ``stages`` and keep their BatchNorm in eval mode.

    Raises:
        ValueError: an unknown stage name.
    """
    for stage in stages:
        for module in model.stage_modules(stage):
            for param in module.parameters():
                param.requires_grad_(False)
    model.frozen_stages = tuple(stages)
    model.train(model.training)


def count_parameters(model: DefectNet) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
