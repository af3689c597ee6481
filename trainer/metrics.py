"""Classification metrics from predicted probabilities (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["binary_roc", "classification_metrics", "roc_auc"]


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); ``None`` without both classes."""
    positive = positive.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):  # average ranks over ties
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_roc(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over all thresholds, for plotting."""
    positive = positive.astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    tp = np.concatenate([[0], np.cumsum(positive[order])])
    fp = np.concatenate([[0], np.cumsum(~positive[order])])
    return fp / max(1, fp[-1]), tp / max(1, tp[-1])


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, ok_index: int | None, threshold: float
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class P/R/F1, confusion, defect-vs-ok figures.

    Args:
        probs: ``[N, C]`` class probabilities.
        labels: ``[N]`` true class indices.
        classes: class names in index order.
        ok_index: index of the "no defect" class, or ``None`` when there is none.
        threshold: an image is a defect when ``1 - P(ok) >= threshold``.

    Returns:
        A JSON-ready dict.
    """
    num = len(classes)
    preds = probs.argmax(axis=1)
    confusion = np.zeros((num, num), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    tp = np.diag(confusion)
    precision = np.divide(tp, predicted, out=np.zeros(num), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(num), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num), where=(precision + recall) > 0)
    present = support > 0
    result: dict[str, Any] = {
        "count": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion.tolist(),
        "classes": list(classes),
    }
    if ok_index is not None:
        defect_score = 1.0 - probs[:, ok_index]
        is_defect = labels != ok_index
        flagged = defect_score >= threshold
        result["defect"] = {
            "ok_class": classes[ok_index],
            "threshold": threshold,
            "roc_auc": roc_auc(defect_score, is_defect),
            "recall": float(flagged[is_defect].mean()) if is_defect.any() else None,
            "false_alarm_rate": float(flagged[~is_defect].mean()) if (~is_defect).any() else None,
        }
    return result
