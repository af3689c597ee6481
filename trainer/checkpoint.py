"""Checkpoints: model weights plus the metadata the deploy step needs.

A checkpoint carries the class names, the "ok" class, the input spec and the
architecture, so a bundle is exported from it alone, never from a second copy
of those numbers. ``last.pt`` also holds the optimizer, schedule and scaler
states and the raw training weights that ``--resume`` needs; ``best.pt``,
the one engineers keep and export, does not (a third of the size for a
ResNet50). ``model`` is always the evaluated weights: the weight average
when the run keeps one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from edge_inspector.preprocess import InputSpec
from trainer.config import TrainConfig
from trainer.data import DatasetSplit, class_counts, fingerprint
from trainer.ema import WeightAverage
from trainer.errors import CheckpointError
from trainer.model import DefectNet, build_model
from trainer.schedule import TrainingSchedule

__all__ = [
    "CHECKPOINT_FORMAT",
    "RESUME_ONLY",
    "checkpoint_meta",
    "load_checkpoint",
    "model_from_checkpoint",
    "resume_from",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "edge-inspector-checkpoint/1"
# in last.pt for --resume; best.pt keeps the evaluated weights ("model") and metadata
RESUME_ONLY = ("optimizer", "schedule", "scaler", "train_model", "ema_updates")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, unreadable or not one of ours.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an Edge Inspector checkpoint")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> tuple[DefectNet, InputSpec]:
    """Rebuild the trained network (eval mode) and its input spec."""
    arch = state["arch"]
    model = build_model(
        num_classes=len(state["classes"]),
        weights="none",
        attention=arch["attention"],
        dropout=arch["dropout"],
        cam_stride=arch.get("cam_stride", 32),  # a checkpoint without cam_stride has ResNet50's 32
        pooling=arch.get("pooling", "mean"),  # likewise: global average pooling
    )
    model.load_state_dict(state["model"])
    return model.eval(), InputSpec(**state["input"])


def checkpoint_meta(cfg: TrainConfig, split: DatasetSplit, spec: InputSpec) -> dict[str, Any]:
    """What every checkpoint of a run carries besides weights: enough to export, evaluate and trace it."""
    classes = split.classes
    return {
        "classes": classes,
        "ok_class": cfg.ok_class if cfg.ok_class in classes else None,
        "input": spec.model_dump(mode="json"),
        "arch": {
            "name": "resnet50-cbam",
            "attention": list(cfg.attention),
            "dropout": cfg.dropout,
            "cam_stride": cfg.cam_stride,
            "pooling": cfg.pooling,
        },
        "threshold": cfg.threshold,
        "config": cfg.model_dump(mode="json"),
        "dataset": {
            "fingerprint": fingerprint(split.train + split.val, cfg.data),
            "train_counts": class_counts(split.train, len(classes)),
            "val_counts": class_counts(split.val, len(classes)),
            "given_split": split.given_split,
        },
    }


def resume_from(
    path: Path,
    classes: list[str],
    model: torch.nn.Module,
    average: WeightAverage | None,
    optimizer: torch.optim.Optimizer,
    schedule: TrainingSchedule,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Load ``last.pt``'s training state into the given objects; returns the checkpoint (history, epoch, best).

    Raises:
        CheckpointError: no usable ``last.pt``, one trained on other classes, or one
            that holds no training schedule, which cannot be continued.
    """
    state = load_checkpoint(path)
    if state["classes"] != classes:
        raise CheckpointError(f"{path}: classes {state['classes']} differ from the data's {classes}")
    if "schedule" not in state:
        raise CheckpointError(
            f"{path}: written by an older edge-train, whose schedule cannot be continued; start a new run"
        )
    model.load_state_dict(state.get("train_model", state["model"]))
    if average is not None:
        average.model.load_state_dict(state["model"])
        average.updates = state.get("ema_updates", 0)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state
