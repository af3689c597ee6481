"""Evaluate a run's best checkpoint and write its report files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.data import DatasetSplit, ImageDataset, Sample, scan_folder
from trainer.errors import CheckpointError, DatasetError
from trainer.loop import evaluate
from trainer.metrics import classification_metrics
from trainer.pointing import pointing_score
from trainer.report import collect_cam_examples, write_report
from trainer.transforms import eval_transform

__all__ = ["evaluation_samples", "folder_samples", "split_samples", "write_evaluation"]

log = logging.getLogger(__name__)


def folder_samples(data: Path, classes: list[str]) -> list[Sample]:
    """Every readable image of ``data`` (its ``val/`` part when it is split).

    Raises:
        CheckpointError: no image of the given classes.
    """
    root = data / "val" if (data / "val").is_dir() and (data / "train").is_dir() else data
    try:
        _, samples = scan_folder(root, classes, allow_missing=True)
    except DatasetError as exc:
        raise CheckpointError(str(exc)) from exc
    if not samples:
        raise CheckpointError(f"{root}: no readable images of the classes {classes}")
    return samples


def write_split(path: Path, split: DatasetSplit, root: Path) -> None:
    """Record a run's split in ``split.json`` (paths relative to ``root``), for :func:`split_samples`."""

    def rel(samples: list[Sample]) -> list[list[Any]]:
        return [[str(s.path.relative_to(root)), s.label] for s in samples]

    payload = {"root": str(root.resolve()), "classes": split.classes, "train": rel(split.train), "val": rel(split.val)}
    path.write_text(json.dumps(payload, indent=1))


def split_samples(run_dir: Path) -> list[Sample]:
    """The validation images a run recorded in ``split.json``.

    Raises:
        CheckpointError: the split file or one of its images is gone.
    """
    split_file = run_dir / "split.json"
    if not split_file.is_file():
        raise CheckpointError(f"{split_file}: missing; pass --data to evaluate on a folder")
    split = json.loads(split_file.read_text())
    root = Path(split["root"])
    samples = [Sample(root / rel, label) for rel, label in split["val"]]
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        raise CheckpointError(f"{missing[0]}: validation image gone ({len(missing)} missing); pass --data")
    return samples


def evaluation_samples(run_dir: Path, classes: list[str], data: Path | None) -> list[Sample]:
    """Images of ``data`` when given, else the run's own validation split."""
    return folder_samples(data, classes) if data is not None else split_samples(run_dir)


def write_evaluation(
    run_dir: Path, *, data: Path | None = None, out: Path | None = None, device: torch.device | None = None
) -> dict[str, Any]:
    """Score ``run_dir/best.pt`` and write metrics.json, figures and report.html.

    Args:
        run_dir: a training run directory.
        data: an image folder to evaluate on instead of the run's validation split.
        out: where to write (default: the run directory).
        device: where to run the model (default: CPU).

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        CheckpointError: no usable checkpoint or evaluation images.
    """
    device = device or torch.device("cpu")
    out = out or run_dir
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(run_dir / "best.pt")
    model, spec = model_from_checkpoint(state)
    model.to(device)
    classes: list[str] = state["classes"]
    ok_index = classes.index(state["ok_class"]) if state.get("ok_class") in classes else None
    samples = evaluation_samples(run_dir, classes, data)

    loader = DataLoader(ImageDataset(samples, eval_transform(spec)), batch_size=32)
    preds = evaluate(model, loader, device=device)
    metrics = classification_metrics(
        preds.probs, preds.labels, classes, ok_index=ok_index, threshold=state["threshold"]
    )
    metrics["pointing"] = pointing_score(model, samples, spec, device=device)
    metrics["checkpoint"] = {"epoch": state["epoch"], "path": str(run_dir / "best.pt")}
    metrics["evaluated_on"] = str(data) if data is not None else "validation split"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    examples = collect_cam_examples(
        model, samples, preds.probs, classes, spec, limit=state["config"].get("cam_images", 16), device=device
    )
    write_report(
        out,
        metrics=metrics,
        history=state["history"],
        examples=examples,
        scores=None if ok_index is None else 1.0 - preds.probs[:, ok_index],
        labels=preds.labels,
        ok_index=ok_index,
    )
    log.info(
        "accuracy %.3f, balanced accuracy %.3f on %d images; report: %s",
        metrics["accuracy"],
        metrics["balanced_accuracy"],
        metrics["count"],
        out / "report.html",
    )
    return metrics
