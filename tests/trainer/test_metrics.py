import numpy as np
import pytest

from trainer.metrics import classification_metrics, roc_auc


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.2, 0.9]), np.array([1, 1])) is None


def test_classification_metrics() -> None:
    classes = ["ok", "short", "spur"]
    labels = np.array([0, 0, 0, 1, 1, 2])
    probs = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.8, 0.1, 0.1],
            [0.3, 0.6, 0.1],  # ok image flagged as short
            [0.1, 0.8, 0.1],
            [0.2, 0.2, 0.6],  # short called spur: wrong class, still a defect
            [0.6, 0.1, 0.3],  # spur missed
        ]
    )
    m = classification_metrics(probs, labels, classes, ok_index=0, threshold=0.5)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert m["per_class"]["short"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["ok"]["recall"] == pytest.approx(2 / 3)
    assert m["defect"]["recall"] == pytest.approx(2 / 3)
    assert m["defect"]["false_alarm_rate"] == pytest.approx(1 / 3)
    assert m["defect"]["roc_auc"] == pytest.approx(roc_auc(1 - probs[:, 0], labels != 0))
    assert "defect" not in classification_metrics(probs, labels, classes, ok_index=None, threshold=0.5)
