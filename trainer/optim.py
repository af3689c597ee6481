"""AdamW parameter groups and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainer.model import DefectNet

__all__ = ["WarmupCosine", "build_optimizer", "warmup_cosine"]


def _is_new(name: str) -> bool:
    return name.startswith("fc.") or ".cbam." in name


def build_optimizer(model: nn.Module, *, lr: float, backbone_lr_mult: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in up to four groups.

    New modules (CBAM, head) learn at ``lr``; the unfrozen backbone at
    ``lr * backbone_lr_mult``. Biases and normalisation weights get no weight
    decay. Each group is named (``new``, ``new_no_decay``, ``backbone``,
    ``backbone_no_decay``) so logs and tests can find it.
    """
    net = model.module if hasattr(model, "module") else model
    assert isinstance(net, DefectNet)
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        key = "new" if _is_new(name) else "backbone"
        if param.ndim <= 1:
            key += "_no_decay"
        groups.setdefault(key, []).append(param)
    rates = {"new": lr, "backbone": lr * backbone_lr_mult}
    param_groups = [
        {
            "name": key,
            "params": params,
            "lr": rates[key.removesuffix("_no_decay")],
            "weight_decay": 0.0 if key.endswith("_no_decay") else weight_decay,
        }
        for key, params in sorted(groups.items())
    ]
    if not param_groups:
        raise ValueError("no trainable parameters: every stage is frozen")
    return torch.optim.AdamW(param_groups)


@dataclass
class WarmupCosine:
    """The rate factor at a step: linear warm-up to 1, then cosine decay to ``min_ratio``.

    A callable object rather than a closure, so ``LambdaLR`` saves and restores
    ``total_steps``, which a time-budgeted run fixes after its first epoch.
    """

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.01

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, shape: WarmupCosine) -> torch.optim.lr_scheduler.LambdaLR:
    """Every group's rate times ``shape``'s factor (one shared object: change its total, all follow)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, shape)
