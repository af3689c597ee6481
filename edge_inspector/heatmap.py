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

from edge_inspector.preprocess import InputSpec, crop_box

__all__ = ["activation_peak", "heatmap_jpeg", "normalize_activation", "overlay_heatmap", "upsample_activation"]

JPEG_QUALITY = 85


def normalize_activation(activation: np.ndarray) -> np.ndarray:
    """Scale a ``[h, w]`` activation map to 0..1 (a flat map becomes zeros)."""
    activation = activation.astype(np.float32)
    low, high = float(activation.min()), float(activation.max())
    if high - low < 1e-12:
        return np.zeros_like(activation)
    return (activation - low) / (high - low)


def upsample_activation(activation: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a ``[h, w]`` map to ``[height, width]``, cell ``(i, j)`` on pixel ``(s*i, s*j)``."""
    scale = np.float32([[width / activation.shape[1], 0, 0], [0, height / activation.shape[0], 0]])
    return cv2.warpAffine(activation, scale, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def activation_peak(activation: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """The pixel ``(x, y)`` of a ``height x width`` input on which a ``[h, w]`` map's hottest cell is centred."""
    row, col = np.unravel_index(int(activation.argmax()), activation.shape)
    return col * width / activation.shape[1], row * height / activation.shape[0]


def overlay_heatmap(image: np.ndarray, activation: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a colour-mapped activation map over an RGB image.

    Args:
        image: ``[H, W, 3]`` uint8 RGB image.
        activation: ``[h, w]`` activation map of one class, any scale; it is
            normalised to 0..1 and upsampled to the image size (:func:`upsample_activation`).
        alpha: weight of the heatmap in the blend.

    Returns:
        ``[H, W, 3]`` uint8 RGB overlay.
    """
    height, width = image.shape[:2]
    # scaled to 0..255 at the map's own size, so the full-size passes run on uint8, not float
    levels = np.rint(normalize_activation(activation) * 255).astype(np.uint8)
    heat = upsample_activation(levels, height, width)
    colored = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)


def heatmap_jpeg(roi: np.ndarray, activation: np.ndarray, spec: InputSpec) -> bytes:
    """A camera ROI (RGB) with one class's activation map blended over the part the model saw; JPEG bytes.

    Raises:
        RuntimeError: OpenCV could not encode the JPEG.
    """
    x0, y0, x1, y1 = crop_box(roi.shape[0], roi.shape[1], spec)
    picture = roi.copy()
    picture[y0:y1, x0:x1] = overlay_heatmap(np.ascontiguousarray(roi[y0:y1, x0:x1]), activation)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("JPEG encoding of the heatmap failed")
    return encoded.tobytes()
