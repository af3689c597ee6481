"""The inspector's decisions on their own: label, score and defect from class probabilities; which frames draw
a heatmap."""

from concurrent.futures import Future
from datetime import datetime, timezone

import numpy as np
import pytest

from edge_inspector.capture import Frame
from edge_inspector.config import HeatmapPolicy
from edge_inspector.inspector import decide, heatmap_rule
from edge_inspector.web.front import WebFront

CLASSES = ["ok", "short", "spur"]


@pytest.mark.parametrize(
    ("probabilities", "threshold", "expected"),
    [
        ([0.9, 0.06, 0.04], 0.5, ("ok", 0.1, False)),  # P(defect) = 1 - P(ok), below the threshold
        ([0.5, 0.3, 0.2], 0.5, ("short", 0.5, True)),  # at the threshold: a defect
        ([0.6, 0.15, 0.25], 0.3, ("spur", 0.4, True)),  # ok is likeliest, yet a defect: the likeliest defect names it
        ([0.6, 0.15, 0.25], 0.45, ("ok", 0.4, False)),  # the same frame under a stricter threshold
    ],
)
def test_the_threshold_decides_and_the_likeliest_defect_class_names_a_defect(
    probabilities: list[float], threshold: float, expected: tuple[str, float, bool]
) -> None:
    label, score, is_defect = decide(np.array(probabilities), CLASSES, 0, threshold)
    assert (label, is_defect) == expected[::2] and score == pytest.approx(expected[1])


def test_without_an_ok_class_every_class_is_a_finding() -> None:
    label, score, is_defect = decide(np.array([0.2, 0.7, 0.1]), ["short", "spur", "open"], None, 0.99)
    assert (label, is_defect) == ("spur", True) and score == pytest.approx(0.7)


def _frame(posted: bool = False) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), datetime.now(timezone.utc), 1, reply=Future() if posted else None)


@pytest.mark.parametrize(
    ("policy", "drawn"),
    [
        (HeatmapPolicy.ALWAYS, (True, True)),
        (HeatmapPolicy.DEFECTS, (False, True)),
        (HeatmapPolicy.NEVER, (False, False)),
    ],
)
def test_mqtt_heatmap_policy_and_posted_images(policy: HeatmapPolicy, drawn: tuple[bool, bool]) -> None:
    rule = heatmap_rule(policy)
    assert (rule(_frame(), False), rule(_frame(), True)) == drawn
    with_http = WebFront.heatmap_rule(rule)
    assert (with_http(_frame(), False), with_http(_frame(), True)) == drawn
    assert with_http(_frame(posted=True), False)  # an answer to POST /inspect always carries its heatmap
