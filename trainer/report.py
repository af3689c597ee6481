"""The run report: curves, confusion matrix, CAM grid and one HTML page.

Figures use matplotlib's object API (no pyplot, no global backend), so
importing this module changes nothing.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from edge_inspector.heatmap import overlay_heatmap
from edge_inspector.preprocess import InputSpec, resize_and_crop
from trainer.data import Sample, load_rgb
from trainer.metrics import binary_roc
from trainer.model import DefectNet
from trainer.pointing import activation_maps, defect_box_in_crop

__all__ = ["CamExample", "collect_cam_examples", "write_report"]


@dataclass(frozen=True)
class CamExample:
    """One validation image with the activation map of its predicted class."""

    overlay: np.ndarray
    true_class: str
    predicted_class: str
    confidence: float
    box: tuple[float, float, float, float] | None


def collect_cam_examples(
    model: DefectNet,
    samples: Sequence[Sample],
    probs: np.ndarray,
    classes: Sequence[str],
    spec: InputSpec,
    *,
    limit: int,
    device: torch.device,
) -> list[CamExample]:
    """Up to ``limit`` images, taken round-robin over classes, with their CAMs."""
    if limit <= 0 or not samples:
        return []
    by_class: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_class.setdefault(sample.label, []).append(index)
    picked: list[int] = []
    while len(picked) < limit and any(by_class.values()):
        for label in sorted(by_class):
            if by_class[label] and len(picked) < limit:
                picked.append(by_class[label].pop(0))
    examples = []
    for index in picked:
        sample = samples[index]
        image = load_rgb(sample.path)
        if image is None:
            continue
        crop = resize_and_crop(image, spec)
        cam = activation_maps(model, crop[None], spec, device)[0]
        predicted = int(probs[index].argmax())
        examples.append(
            CamExample(
                overlay=overlay_heatmap(crop, cam[predicted]),
                true_class=classes[sample.label],
                predicted_class=classes[predicted],
                confidence=float(probs[index, predicted]),
                box=defect_box_in_crop(sample, *image.shape[:2], spec),
            )
        )
    return examples


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation."""
    fig = Figure(figsize=(10, 3.8))
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]

    def series(key: str) -> list[float]:  # NaN for the epochs not validated (validate_from)
        return [row.get(key, math.nan) for row in history]

    loss_ax.plot(epochs, series("train_loss"), "o-", label="train")
    loss_ax.plot(epochs, series("val_loss"), "o-", label="validation")
    loss_ax.set(title="loss", xlabel="epoch")
    acc_ax.plot(epochs, series("train_accuracy"), "o-", label="train")
    acc_ax.plot(epochs, series("val_accuracy"), "o-", label="validation")
    acc_ax.plot(epochs, series("val_balanced_accuracy"), "s--", label="validation (balanced)")
    acc_ax.set(title="accuracy", xlabel="epoch", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> None:
    """Confusion matrix, rows true and columns predicted, counts in the cells."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = 1.2 + 0.75 * len(classes)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if rates[row, col] > 0.5 else "black")
    _save(fig, path)


def plot_roc(scores: np.ndarray, labels: np.ndarray, ok_index: int, auc: float | None, path: Path) -> None:
    """ROC curve of defect versus ok."""
    fpr, tpr = binary_roc(scores, labels != ok_index)
    fig = Figure(figsize=(4.2, 4))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUC {auc:.3f}" if auc is not None else "AUC n/a")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false alarm rate", ylabel="defect recall", title="defect vs ok", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_cam_grid(examples: Sequence[CamExample], path: Path) -> None:
    """Validation images with their class activation maps and true defect boxes."""
    cols = min(4, max(1, len(examples)))
    rows = max(1, -(-len(examples) // cols))
    fig = Figure(figsize=(3 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, example in zip(axes, examples, strict=False):
        ax.imshow(example.overlay)
        if example.box is not None:
            x0, y0, x1, y1 = example.box
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=1.5, linestyle="--")
            )
        colour = "green" if example.true_class == example.predicted_class else "red"
        ax.set_title(
            f"true {example.true_class}\npred {example.predicted_class} ({example.confidence:.2f})",
            fontsize=9,
            color=colour,
        )
    _save(fig, path)


def _img_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for name, m in metrics["per_class"].items()
    )
    return f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>{rows}</table>"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_report(
    out: Path,
    *,
    metrics: dict[str, Any],
    history: Sequence[dict[str, Any]],
    examples: Sequence[CamExample],
    scores: np.ndarray | None,
    labels: np.ndarray,
    ok_index: int | None,
) -> Path:
    """Write curves.png, confusion.png, roc.png, cam_grid.png and report.html.

    Returns:
        The path of ``report.html``, which embeds every figure so it can be
        mailed as one file.
    """
    figures = [out / "curves.png", out / "confusion.png", out / "cam_grid.png"]
    plot_curves(history, figures[0])
    plot_confusion(metrics["confusion_matrix"], metrics["classes"], figures[1])
    plot_cam_grid(examples, figures[2])
    defect = metrics.get("defect")
    summary = [
        ("images evaluated", str(metrics["count"])),
        ("accuracy", _fmt(metrics["accuracy"])),
        ("balanced accuracy", _fmt(metrics["balanced_accuracy"])),
        ("macro F1", _fmt(metrics["macro_f1"])),
    ]
    pointing = metrics.get("pointing")
    if pointing:
        h, w = pointing["cam_size"]
        summary.append(
            (
                f"pointing: activation peak inside the defect box ({pointing['images']} boxed images, {h}x{w} map)",
                _fmt(pointing["score"]),
            )
        )
    if defect and scores is not None and ok_index is not None:
        figures.insert(2, out / "roc.png")
        plot_roc(scores, labels, ok_index, defect["roc_auc"], figures[2])
        summary += [
            ("defect vs ok ROC AUC", _fmt(defect["roc_auc"])),
            (f"defect recall at threshold {defect['threshold']}", _fmt(defect["recall"])),
            (f"false alarm rate at threshold {defect['threshold']}", _fmt(defect["false_alarm_rate"])),
        ]
    checkpoint = metrics.get("checkpoint", {})
    summary_rows = "".join(f"<tr><td>{html.escape(k)}</td><td><b>{v}</b></td></tr>" for k, v in summary)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Edge Inspector training report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%;margin:0.5em 0}}</style></head><body>
<h1>Training report</h1>
<p>Checkpoint: {html.escape(str(checkpoint.get("path", "")))} (epoch {checkpoint.get("epoch", "?")}),
evaluated on {html.escape(str(metrics.get("evaluated_on", "")))}.</p>
<table>{summary_rows}</table>
<h2>Per class</h2>{_metrics_table(metrics)}
{"".join(f"<h2>{html.escape(p.stem.replace('_', ' '))}</h2>{_img_tag(p)}" for p in figures)}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
