"""Losses for imbalanced defect data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.errors import ConfigError
from trainer.config import LossKind, TrainConfig

__all__ = ["FocalLoss", "balanced_class_weights", "build_loss"]


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): ``-alpha_y (1 - p_y)^gamma log p_y``.

    With ``gamma = 0`` and no ``alpha`` it equals cross entropy; ``alpha``
    weights each sample by its true class and the mean is normalised by the
    summed weights, like ``F.cross_entropy(weight=...)``.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError("gamma must be non-negative")
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("alpha", alpha.float() if alpha is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        ce = F.nll_loss(log_p, target, reduction="none")
        if self.label_smoothing:
            ce = (1 - self.label_smoothing) * ce - self.label_smoothing * log_p.mean(dim=1)
        p_true = log_p.gather(1, target[:, None]).squeeze(1).exp()
        loss = (1.0 - p_true).pow(self.gamma) * ce
        if self.alpha is None:
            return loss.mean()
        weight = self.alpha[target]
        return (weight * loss).sum() / weight.sum()


def balanced_class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency weights with mean 1 (classes with no image get 0)."""
    counts_t = torch.tensor(counts, dtype=torch.float32)
    weights = torch.where(counts_t > 0, counts_t.sum() / counts_t.clamp(min=1), torch.zeros_like(counts_t))
    return weights * (len(counts) / weights.sum())


def build_loss(config: TrainConfig, counts: Sequence[int]) -> FocalLoss:
    """The configured loss with its per-class weights.

    Raises:
        ConfigError: ``focal_alpha`` does not have one value per class.
    """
    alpha: torch.Tensor | None = None
    if config.focal_alpha is not None:
        if len(config.focal_alpha) != len(counts):
            raise ConfigError(f"focal_alpha has {len(config.focal_alpha)} values for {len(counts)} classes")
        alpha = torch.tensor(config.focal_alpha, dtype=torch.float32)
    elif config.class_weights:
        alpha = balanced_class_weights(counts)
    gamma = config.focal_gamma if config.loss is LossKind.FOCAL else 0.0
    return FocalLoss(gamma=gamma, alpha=alpha, label_smoothing=config.label_smoothing)
