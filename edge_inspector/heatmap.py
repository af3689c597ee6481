"""Turn a class activation map into a picture an engineer can read, aligned with the pixels it saw.

Cell ``(i, j)`` of a stride-``s`` map is centred on pixel ``(s*i, s*j)`` of the
model's input, not on the middle of an ``s x s`` tile: ResNet's strided
convolutions and pooling centre their first output on the first pixel. A
plain resize would shift the map half a cell down and right (8 px at stride
16), often off a small defect.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["cam_peak", "normalize_cam", "overlay_heatmap", "upsample_cam"]


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """Scale a ``[h, w]`` activation map to 0..1 (a flat map becomes zeros)."""
    cam = cam.astype(np.float32)
    low, high = float(cam.min()), float(cam.max())
    if high - low < 1e-12:
        return np.zeros_like(cam)
    return (cam - low) / (high - low)


def upsample_cam(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a ``[h, w]`` map to ``[height, width]``, cell ``(i, j)`` on pixel ``(s*i, s*j)``."""
    scale = np.float32([[width / cam.shape[1], 0, 0], [0, height / cam.shape[0], 0]])
    return cv2.warpAffine(cam, scale, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def cam_peak(cam: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """The pixel ``(x, y)`` of a ``height x width`` input on which a ``[h, w]`` map's hottest cell is centred."""
    row, col = np.unravel_index(int(cam.argmax()), cam.shape)
    return col * width / cam.shape[1], row * height / cam.shape[0]


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a colour-mapped activation map over an RGB image.

    Args:
        image: ``[H, W, 3]`` uint8 RGB image.
        cam: ``[h, w]`` activation map of one class, any scale; it is
            normalised to 0..1 and upsampled to the image size (:func:`upsample_cam`).
        alpha: weight of the heatmap in the blend.

    Returns:
        ``[H, W, 3]`` uint8 RGB overlay.
    """
    height, width = image.shape[:2]
    # scaled to 0..255 at the map's own size, so the full-size passes run on uint8, not float
    levels = np.rint(normalize_cam(cam) * 255).astype(np.uint8)
    heat = upsample_cam(levels, height, width)
    colored = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)
