"""Camera/imaging effects: pose jitter, lighting, blur, downscale and sensor noise."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .board import Raster, Window

PixelBox = tuple[int, int, int, int]
UnitBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class ImagingParams:
    """One random draw of imaging conditions (all deterministic once sampled)."""

    angle_deg: float
    zoom: float
    shift: tuple[float, float]
    gradient: tuple[float, float]
    vignette: float
    gain: float
    tint: tuple[float, float, float]
    blur_px: float
    noise_sigma: float
    noise_seed: int
    view: float = 1.0
    focus: tuple[float, float] = (0.5, 0.5)


def sample_imaging(rng: np.random.Generator) -> ImagingParams:
    """Draw imaging conditions from ``rng``."""
    ang = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0.0, 0.25)
    return ImagingParams(
        angle_deg=float(rng.uniform(-3, 3)),
        zoom=float(rng.uniform(0.97, 1.05)),
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
        gradient=(float(strength * math.cos(ang)), float(strength * math.sin(ang))),
        vignette=float(rng.uniform(0.0, 0.3)),
        gain=float(rng.uniform(0.88, 1.1)),
        tint=tuple(float(v) for v in rng.uniform(0.95, 1.05, 3)),  # type: ignore[arg-type]
        blur_px=float(rng.uniform(0.25, 0.6)),
        noise_sigma=float(rng.uniform(1.0, 4.0)),
        noise_seed=int(rng.integers(2**31)),
    )


def pose_matrix(params: ImagingParams, raster: Raster, out_side: int) -> np.ndarray:
    """Affine mapping canvas pixels to render-resolution output pixels.

    The board point ``params.focus`` lands in the output centre (before the
    jitter ``shift``) and the output shows ``params.view`` of the board side.
    """
    fx, fy = raster.px(params.focus)
    m = cv2.getRotationMatrix2D((fx, fy), params.angle_deg, params.zoom / params.view)
    o = out_side / 2.0 - 0.5
    m[0, 2] += o - fx + params.shift[0] * out_side
    m[1, 2] += o - fy + params.shift[1] * out_side
    return m


def frame_view(params: ImagingParams, view: float, box: UnitBox | None, rng: np.random.Generator) -> ImagingParams:
    """Aim a camera that sees ``view`` of the board side at the defect, else anywhere.

    With ``view`` 1 the whole board is seen and ``rng`` is not used. Otherwise
    the defect box lands at a random place well inside the frame.
    """
    if view >= 1.0:
        return params
    half = view / 2.0
    if box is None:
        focus = rng.uniform(half, 1.0 - half, 2)
    else:
        centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
        room = np.maximum(half * 0.7 - np.array([box[2] - box[0], box[3] - box[1]]) / 2.0, 0.0)
        focus = np.clip(centre + rng.uniform(-room, room), half, 1.0 - half)
    return replace(params, view=float(view), focus=(float(focus[0]), float(focus[1])))


def view_window(params: ImagingParams, raster: Raster, size: int) -> Window | None:
    """The canvas pixels :func:`apply_imaging` samples, or None when it may reach past the canvas edge."""
    hi = size * _factor(raster, size)
    inverse = cv2.invertAffineTransform(pose_matrix(params, raster, hi))
    corners = np.array([[0, 0, 1], [hi - 1, 0, 1], [0, hi - 1, 1], [hi - 1, hi - 1, 1]], np.float64) @ inverse.T
    low = np.floor(corners.min(axis=0)).astype(int) - 2  # bilinear reads the next pixel; a pixel to spare
    high = np.ceil(corners.max(axis=0)).astype(int) + 3
    if (low < 0).any() or (high > raster.side).any():
        return None  # the border is reflected there: compose the whole canvas
    return int(low[1]), int(high[1]), int(low[0]), int(high[0])


def _factor(raster: Raster, size: int) -> int:
    # the supersampling the raster was rendered at for a ``size`` image (see :func:`supersample`)
    return int(round(raster.scale / size))


def supersample(size: int) -> int:
    """Supersampling factor used to render an image of ``size`` pixels."""
    return max(2, math.ceil(384 / size))


def apply_imaging(canvas: np.ndarray, params: ImagingParams, raster: Raster, size: int) -> np.ndarray:
    """Turn a composed float RGB canvas into the final ``size`` x ``size`` uint8 RGB image."""
    ss = _factor(raster, size)
    hi = size * ss
    m = pose_matrix(params, raster, hi)
    img = cv2.warpAffine(canvas, m, (hi, hi), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:hi, 0:hi].astype(np.float32) / np.float32(hi) - np.float32(0.5)
    light = 1.0 + params.gradient[0] * xx * 2 + params.gradient[1] * yy * 2
    light = light * (1.0 - params.vignette * (xx * xx + yy * yy) * 2)
    img = img * (light * params.gain)[..., None] * np.array(params.tint, np.float32)
    img = cv2.GaussianBlur(img, (0, 0), params.blur_px * ss)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(params.noise_seed).standard_normal(img.shape).astype(np.float32)
    img = img + noise * np.float32(params.noise_sigma)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def transform_box(box: UnitBox, params: ImagingParams, raster: Raster, size: int) -> PixelBox:
    """Map a board-unit box through the pose to final-image pixels (x1, y1 exclusive), clipped."""
    ss = _factor(raster, size)
    m = pose_matrix(params, raster, size * ss)
    x0, y0, x1, y1 = box
    corners = np.array([raster.px(p) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], np.float64)
    out = corners @ m[:, :2].T + m[:, 2]
    out = (out + 0.5) / ss
    bx0, by0 = np.floor(out.min(axis=0)).astype(int)
    bx1, by1 = np.ceil(out.max(axis=0)).astype(int)
    clip = lambda v: int(min(max(v, 0), size))  # noqa: E731
    return clip(bx0), clip(by0), clip(bx1), clip(by1)


__all__ = [
    "ImagingParams",
    "apply_imaging",
    "frame_view",
    "sample_imaging",
    "supersample",
    "transform_box",
    "view_window",
]
