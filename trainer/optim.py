"""AdamW parameter groups, and setting their rates from the schedule (:mod:`trainer.schedule`)."""

from __future__ import annotations

import torch
from torch import nn

from trainer.model import DefectNet

__all__ = ["build_optimizer", "scale_rates"]


def _is_new(name: str) -> bool:
    return name.startswith("fc.") or ".cbam." in name


def build_optimizer(model: nn.Module, *, lr: float, backbone_lr_mult: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in up to four groups.

    New modules (CBAM, head) learn at ``lr``; the unfrozen backbone at
    ``lr * backbone_lr_mult``. Biases and normalisation weights get no weight
    decay. Each group is named (``new``, ``new_no_decay``, ``backbone``,
    ``backbone_no_decay``) so logs and tests can find it.

    The update is fused into one kernel over all parameters where torch has
    one for their device (CUDA; the CPU from torch 2.4): the same AdamW, a
    fraction of the per-tensor loop's time (bench/README.md).
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
    try:
        return torch.optim.AdamW(param_groups, fused=True)
    except RuntimeError:  # no fused kernel for this device in this torch
        return torch.optim.AdamW(param_groups)


def scale_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's rate to its initial rate times ``factor`` (a schedule's value for this step)."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
