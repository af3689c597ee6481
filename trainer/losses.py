"""Losses for imbalanced defect data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.errors import ConfigError
from trainer.config import LossKind, TrainConfig

__all__ = ["BoxGuidance", "FocalLoss", "balanced_class_weights", "build_loss"]


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


class BoxGuidance(nn.Module):
    """Pulls each defect's activation map into its box, for the images that have one.

    The true class's map is read as a spatial softmax over its cells; the loss
    is ``weight`` times minus the log of the share on cells centred inside the
    box (cell ``(i, j)`` on pixel ``(s*i, s*j)``, ``s`` = ``image_size`` / map
    side, as :mod:`edge_inspector.heatmap` places it), or on the cell nearest
    the box's centre when no centre falls inside, averaged over the boxed
    images. Zero for a batch without boxes. Boxes are in ``image_size`` pixels
    even when the batch was shrunk (progressive resizing): the grid scales.
    """

    def __init__(self, weight: float, image_size: int) -> None:
        super().__init__()
        self.weight = weight
        self.image_size = image_size

    def forward(self, cam: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``cam [N, C, h, w]``, ``labels [N]``, ``boxes [N, 4]`` in input pixels, NaN rows for no box."""
        boxed = torch.isfinite(boxes).all(dim=1)
        if not bool(boxed.any()):
            return cam.sum() * 0.0  # no box: no pull, but the graph stays whole for DDP
        maps = cam[boxed, labels[boxed]].float()
        box = boxes[boxed].to(maps.device)[:, :, None, None]
        height, width = maps.shape[1:]
        step_y, step_x = self.image_size / height, self.image_size / width
        rows = torch.arange(height, device=maps.device)[None, :, None]
        cols = torch.arange(width, device=maps.device)[None, None, :]
        ys, xs = rows * step_y, cols * step_x
        inside = (xs >= box[:, 0]) & (xs < box[:, 2]) & (ys >= box[:, 1]) & (ys < box[:, 3])
        near_col = (((box[:, 0] + box[:, 2]) / 2) / step_x).round().clamp(0, width - 1)
        near_row = (((box[:, 1] + box[:, 3]) / 2) / step_y).round().clamp(0, height - 1)
        nearest = (cols == near_col) & (rows == near_row)
        inside = torch.where(inside.flatten(1).any(dim=1)[:, None, None], inside, nearest)
        flat = maps.flatten(1)
        log_share = torch.logsumexp(flat.masked_fill(~inside.flatten(1), float("-inf")), dim=1) - torch.logsumexp(
            flat, dim=1
        )
        return -self.weight * log_share.mean()
