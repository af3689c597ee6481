"""The pointing score: the activation peak, mapped through resize and crop, against the sidecar's defect box."""

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from edge_inspector.preprocess import InputSpec
from trainer.data import Sample
from trainer.pointing import pointing_score


class BrightnessCam(torch.nn.Module):
    """A stand-in whose 8x8 map is the brightness at every 8th pixel: its peak is the bright patch."""

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cam = x.mean(dim=1, keepdim=True)[..., ::8, ::8].repeat(1, 2, 1, 1)
        return cam.mean(dim=(2, 3)), cam


def _image(folder: Path, name: str, patch: tuple[int, int], box: list[int] | None) -> Sample:
    image = np.zeros((90, 120, 3), np.uint8)  # wider than high: the centre crop cuts the sides
    x, y = patch
    image[y : y + 12, x : x + 12] = 255
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), image)
    if box is not None:
        path.with_suffix(".json").write_text(json.dumps({"class": "short", "box": box}))
    return Sample(path, 1)


def test_pointing_counts_peaks_inside_the_box_through_resize_and_crop(tmp_path: Path) -> None:
    samples = [
        _image(tmp_path, "hit", (70, 40), [66, 36, 86, 56]),  # box around the bright patch
        _image(tmp_path, "miss", (70, 40), [20, 10, 40, 30]),  # box elsewhere
        _image(tmp_path, "edge", (20, 60), [16, 56, 36, 76]),  # left of centre, still inside the crop
        _image(tmp_path, "ok", (50, 30), None),  # no box: not counted
    ]
    result = pointing_score(BrightnessCam(), samples, InputSpec.for_size(64), device=torch.device("cpu"))
    assert result == {"score": 2 / 3, "images": 3, "cam_size": [8, 8]}


def test_no_boxes_no_score(tmp_path: Path) -> None:
    samples = [_image(tmp_path, "plain", (10, 10), None)]
    assert pointing_score(BrightnessCam(), samples, InputSpec.for_size(64), device=torch.device("cpu")) is None
