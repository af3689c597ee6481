"""One training epoch and one evaluation pass: small functions other scripts reuse."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import AmpMode
from trainer.ema import WeightAverage
from trainer.losses import BoxGuidance
from trainer.optim import scale_rates
from trainer.schedule import TrainingSchedule

__all__ = ["EpochStats", "Predictions", "StepStats", "autocast", "evaluate", "resolve_amp", "train_one_epoch"]


@dataclass(frozen=True)
class StepStats:
    """Running figures after one optimizer step (for a progress bar)."""

    step: int
    loss: float
    accuracy: float
    lr: float


@dataclass(frozen=True)
class EpochStats:
    """Sums over one process's share of an epoch."""

    loss_sum: float
    correct: int
    seen: int

    @classmethod
    def total(cls, parts: list[EpochStats]) -> EpochStats:
        """The sums over every process's share."""
        return cls(sum(p.loss_sum for p in parts), sum(p.correct for p in parts), sum(p.seen for p in parts))


@dataclass(frozen=True)
class Predictions:
    """Class probabilities and true labels of an evaluation pass, plus summed loss."""

    probs: np.ndarray
    labels: np.ndarray
    loss_sum: float

    @classmethod
    def merged(cls, parts: list[Predictions]) -> Predictions:
        """Every process's shard as one pass (the shards are disjoint)."""
        filled = [p for p in parts if len(p.labels)] or parts[:1]
        return cls(
            np.concatenate([p.probs for p in filled]),
            np.concatenate([p.labels for p in filled]),
            sum(p.loss_sum for p in filled),
        )


def resolve_amp(device: torch.device, mode: AmpMode) -> torch.dtype | None:
    """The autocast dtype: fp16 on CUDA, bf16 on CPUs that support it, else none."""
    if mode is AmpMode.OFF:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_bf16():
        return torch.bfloat16
    if mode is AmpMode.ON:
        raise ValueError(f"mixed precision is not supported on {device}")
    return None


def _cpu_has_bf16() -> bool:
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check()) if check is not None else False


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
    """Autocast to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(
    images: torch.Tensor, device: torch.device, channels_last: bool, side: int | None = None
) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if side is not None and side != images.shape[-1]:
        # progressive resizing: the batch shrinks as a whole (boxes stay in full-size pixels, which the box
        # loss reads against the map's own grid, so they need no change)
        images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, ...]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: TrainingSchedule,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    average: WeightAverage | None = None,
    guidance: BoxGuidance | None = None,
    on_step: Callable[[StepStats], None] | None = None,
) -> EpochStats:
    """Train over ``loader`` once, or until ``schedule`` says the run is over.

    Each batch gets the schedule's rate and input side, then updates ``average``.
    With ``guidance``, the loader yields ``(images, labels, boxes)`` and the
    box loss on the activation maps is added to ``loss_fn``'s.
    """
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (images, labels, *boxes) in enumerate(loader, start=1):
        plan = schedule.next_step()
        if plan is None:
            break
        scale_rates(optimizer, plan.lr_factor)
        images = _to_device(images, device, channels_last, plan.image_side)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits, cam = model(images, with_cam=True) if guidance is not None else (model(images), None)
        loss = loss_fn(logits.float(), labels)
        if guidance is not None:
            loss = loss + guidance(cam, labels, boxes[0])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if average is not None:
            average.update()
        batch = labels.shape[0]
        loss_sum += loss.item() * batch
        correct += int((logits.argmax(dim=1) == labels).sum())
        seen += batch
        if on_step is not None:
            on_step(StepStats(step, loss_sum / seen, correct / seen, optimizer.param_groups[0]["lr"]))
    return EpochStats(loss_sum, correct, seen)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    loss_fn: nn.Module | None = None,
    channels_last: bool = False,
) -> Predictions:
    """Class probabilities for every image in ``loader`` (model in eval mode)."""
    model.eval()
    probs: list[np.ndarray] = []
    labels_out: list[np.ndarray] = []
    loss_sum = 0.0
    for images, labels in loader:
        images = _to_device(images, device, channels_last)
        labels = labels.to(device)
        with autocast(device, amp_dtype):
            logits = model(images).float()
        if loss_fn is not None:
            loss_sum += loss_fn(logits, labels).item() * labels.shape[0]
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        labels_out.append(labels.cpu().numpy())
    if not probs:
        return Predictions(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), 0.0)
    return Predictions(np.concatenate(probs), np.concatenate(labels_out), loss_sum)
