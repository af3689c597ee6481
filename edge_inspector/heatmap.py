"""Turn a class activation map into a picture an engineer can read."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["normalize_cam", "overlay_heatmap"]


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """Scale a ``[h, w]`` activation map to 0..1 (a flat map becomes zeros)."""
    cam = cam.astype(np.float32)
    low, high = float(cam.min()), float(cam.max())
    if high - low < 1e-12:
        return np.zeros_like(cam)
    return (cam - low) / (high - low)


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a colour-mapped activation map over an RGB image.

    Args:
        image: ``[H, W, 3]`` uint8 RGB image.
        cam: ``[h, w]`` activation map of one class, any scale; it is
            normalised to 0..1 and upsampled to the image size.
        alpha: weight of the heatmap in the blend.

    Returns:
        ``[H, W, 3]`` uint8 RGB overlay.
    """
    height, width = image.shape[:2]
    # scaled to 0..255 at the map's own size, so the full-size passes run on uint8, not float
    levels = np.rint(normalize_cam(cam) * 255).astype(np.uint8)
    heat = cv2.resize(levels, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)
