"""Do the heatmaps point at the defect? The pointing score of a model's class activation maps.

An image may come with a sidecar defect box (:func:`trainer.data.defect_box`).
It *points* when the peak of its true class's activation map lies inside that
box, as the model saw the image (after resize and centre crop), with the map
aligned as :mod:`edge_inspector.heatmap` aligns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edge_inspector.heatmap import activation_peak
from edge_inspector.preprocess import InputSpec, resize_and_crop, resized_shape
from trainer.data import Sample, defect_box, load_rgb
from trainer.model import DefectNet

__all__ = ["activation_maps", "defect_box_in_crop", "pointing_score"]


def defect_box_in_crop(sample: Sample, height: int, width: int, spec: InputSpec) -> tuple[float, ...] | None:
    """The defect box of an image's sidecar, mapped into the model's crop; None without one."""
    box = defect_box(sample)
    if box is None:
        return None
    new_h, new_w = resized_shape(height, width, spec.resize)
    sx, sy = new_w / width, new_h / height
    left, top = (new_w - spec.size) // 2, (new_h - spec.size) // 2
    x0, y0, x1, y1 = box
    return (x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top)


@torch.no_grad()
def activation_maps(model: DefectNet, crops: np.ndarray, spec: InputSpec, device: torch.device) -> np.ndarray:
    """Class activation maps ``[N, C, h, w]`` of uint8 RGB model crops ``[N, size, size, 3]`` (model in eval mode)."""
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255
    batch = torch.from_numpy(crops).to(device).permute(0, 3, 1, 2).float()
    model.eval()
    return model.forward_with_cam((batch - mean) / std)[1].float().cpu().numpy()


def pointing_score(
    model: DefectNet, samples: Sequence[Sample], spec: InputSpec, *, device: torch.device, batch_size: int = 32
) -> dict[str, Any] | None:
    """The share of images with a defect box whose true-class map peaks inside it; None when no image has a box.

    Returns:
        ``{"score": share, "images": how many had a box, "cam_size": [h, w]}``.
    """
    boxed = []
    for sample in samples:
        image = load_rgb(sample.path)
        if image is None:
            continue
        box = defect_box_in_crop(sample, *image.shape[:2], spec)
        if box is not None:
            boxed.append((resize_and_crop(image, spec), sample.label, box))
    if not boxed:
        return None
    hits, cam_size = 0, [0, 0]
    for start in range(0, len(boxed), batch_size):
        chunk = boxed[start : start + batch_size]
        cams = activation_maps(model, np.stack([crop for crop, _, _ in chunk]), spec, device)
        cam_size = list(cams.shape[2:])
        for (_, label, (x0, y0, x1, y1)), cam in zip(chunk, cams, strict=True):
            x, y = activation_peak(cam[label], spec.size, spec.size)
            hits += int(x0 <= x < x1 and y0 <= y < y1)
    return {"score": hits / len(boxed), "images": len(boxed), "cam_size": cam_size}
