"""Losses for imbalanced defect data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.errors import ConfigError
from trainer.config import LossKind, TrainConfig

__all__ = ["BoxGuidance", "FocalLoss", "balanced_class_weights", "build_guidance", "build_loss"]


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


def build_guidance(config: TrainConfig, ok_index: int | None) -> BoxGuidance | None:
    """The configured box guidance, or None when its weights are both 0.

    Raises:
        ConfigError: cell guidance, and the data has no ``ok_class``.
    """
    if not config.guided:
        return None
    if config.cell_guidance and ok_index is None:
        raise ConfigError(f"cell_guidance teaches the '{config.ok_class}' class, and the data has none")
    return BoxGuidance(config.box_guidance, config.image_size, cell_weight=config.cell_guidance, ok_index=ok_index)


class BoxGuidance(nn.Module):
    """Teaches the activation maps where the defect is, from the sidecar boxes images carry.

    Cell ``(i, j)`` of an ``h x w`` map is centred on pixel ``(s*i, s*j)``,
    ``s`` = ``image_size`` / map side, as :mod:`edge_inspector.heatmap` places
    it. Boxes are in ``image_size`` pixels even when the batch was shrunk
    (progressive resizing): the grid scales. A box's cells are those centred
    inside it, or the one nearest its centre when no centre falls inside.
    Two terms, each with its weight:

    - ``weight``, the pull: the true class's map is read as a spatial softmax
      over its cells; the loss is minus the log of the share on the box's
      cells, averaged over the boxed images.
    - ``cell_weight``, the cells: each cell is classified on its own, by cross
      entropy over the class maps at that cell. A box's cells are its defect;
      cells centred more than a cell clear of the box, and every cell of an
      ``ok_index`` image, are ``ok``. The cells at a box's rim, which see part
      of the defect, and the cells of a defect image without a box are not
      counted. A defect is local, so the rest of its board is
      what an ``ok`` board looks like: every image teaches ``ok``.
    """

    def __init__(
        self, weight: float, image_size: int, *, cell_weight: float = 0.0, ok_index: int | None = None
    ) -> None:
        super().__init__()
        if cell_weight and ok_index is None:
            raise ValueError("cell guidance needs the index of the 'ok' class")
        self.weight = weight
        self.image_size = image_size
        self.cell_weight = cell_weight
        self.ok_index = ok_index

    def forward(self, cam: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``cam [N, C, h, w]``, ``labels [N]``, ``boxes [N, 4]`` in input pixels, NaN rows for no box."""
        boxes = boxes.to(cam.device)
        boxed = torch.isfinite(boxes).all(dim=1)
        hit, near = _cell_masks(cam.shape[2:], self.image_size, boxes.nan_to_num(0.0))
        loss = cam.sum() * 0.0  # a batch with nothing to learn here: the graph stays whole for DDP
        if self.weight and bool(boxed.any()):
            maps = cam[boxed, labels[boxed]].float().flatten(1)
            target = hit[boxed].flatten(1)
            log_share = torch.logsumexp(maps.masked_fill(~target, float("-inf")), dim=1) - torch.logsumexp(maps, dim=1)
            loss = loss - self.weight * log_share.mean()
        if self.cell_weight:
            assert self.ok_index is not None
            ignore = -100
            defect = labels[:, None, None].expand_as(hit)
            ok = torch.full_like(defect, self.ok_index)
            boxed_cells = boxed[:, None, None]
            target = torch.where((labels == self.ok_index)[:, None, None] | (boxed_cells & ~near), ok, ignore)
            target = torch.where(boxed_cells & hit, defect, target)
            if bool((target != ignore).any()):
                loss = loss + self.cell_weight * F.cross_entropy(cam.float(), target, ignore_index=ignore)
        return loss


def _cell_masks(size: Sequence[int], image_size: int, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, h, w]`` masks of each box's cells and of the cells centred within a cell's step of it."""
    height, width = int(size[0]), int(size[1])
    step_y, step_x = image_size / height, image_size / width
    box = boxes[:, :, None, None]
    rows = torch.arange(height, device=boxes.device)[None, :, None]
    cols = torch.arange(width, device=boxes.device)[None, None, :]
    ys, xs = rows * step_y, cols * step_x

    def within(margin_y: float, margin_x: float) -> torch.Tensor:
        return (
            (xs >= box[:, 0] - margin_x)
            & (xs < box[:, 2] + margin_x)
            & (ys >= box[:, 1] - margin_y)
            & (ys < box[:, 3] + margin_y)
        )

    near_col = (((box[:, 0] + box[:, 2]) / 2) / step_x).round().clamp(0, width - 1)
    near_row = (((box[:, 1] + box[:, 3]) / 2) / step_y).round().clamp(0, height - 1)
    inside = within(0.0, 0.0)
    hit = torch.where(inside.flatten(1).any(dim=1)[:, None, None], inside, (cols == near_col) & (rows == near_row))
    return hit, within(step_y, step_x)
