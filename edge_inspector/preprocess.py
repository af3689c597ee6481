"""Input geometry shared by training validation and the edge box.

The model sees a frame the same way on the line as during validation: scale so
the shorter side equals ``InputSpec.resize``, then cut the central
``size`` x ``size`` square. Normalisation (``mean``/``std``) happens inside the
exported graph, so the box only resizes and crops uint8 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputSpec",
    "ModelInput",
    "crop_box",
    "crop_roi",
    "resize_and_crop",
    "resized_shape",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# torchvision's classification recipe: resize to 256, crop 224.
DEFAULT_CROP_RATIO = 0.875


class InputSpec(BaseModel):
    """What the model expects: square crop size, resize before crop, colours.

    ``mean`` and ``std`` are on the 0..1 scale, applied per channel in
    ``color_order``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=16, le=2048, description="side of the square crop fed to the model")
    resize: int = Field(ge=16, le=4096, description="shorter side after resizing, before the crop")
    color_order: Literal["RGB"] = "RGB"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _resize_covers_crop(self) -> InputSpec:
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be at least the crop size ({self.size})")
        return self

    @classmethod
    def for_size(cls, size: int) -> InputSpec:
        """The spec for a crop of ``size`` with the standard 0.875 crop ratio."""
        return cls(size=size, resize=round(size / DEFAULT_CROP_RATIO))


@dataclass(frozen=True)
class ModelInput:
    """A frame made ready for a model: its region of interest and the model's input cut from it."""

    roi: np.ndarray
    pixels: np.ndarray
    spec: InputSpec
    milliseconds: float


def resized_shape(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(height, width) after scaling the shorter side to ``shorter``.

    Rounds exactly as albumentations' ``SmallestMaxSize`` does (Python's
    ``round``), so training validation and the edge produce identical pixels.
    """
    scale = shorter / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_and_crop(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize the shorter side to ``spec.resize`` and centre-crop ``spec.size``.

    Args:
        image: ``[H, W, 3]`` uint8 image in ``spec.color_order``.
        spec: the model's input spec.

    Returns:
        A contiguous ``[size, size, 3]`` uint8 array.

    Raises:
        ValueError: the image is not ``[H, W, 3]``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {image.shape}")
    height, width = image.shape[:2]
    new_h, new_w = resized_shape(height, width, spec.resize)
    if (new_h, new_w) != (height, width):
        downscale = spec.resize < min(height, width)
        interpolation = cv2.INTER_AREA if downscale else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top = (new_h - spec.size) // 2
    left = (new_w - spec.size) // 2
    return np.ascontiguousarray(image[top : top + spec.size, left : left + spec.size])


def crop_roi(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """Cut ``roi`` (x, y, width, height) out of a frame, clipped to it.

    Raises:
        ValueError: the region lies outside the frame.
    """
    if roi is None:
        return image
    x, y, w, h = roi
    height, width = image.shape[:2]
    x1, y1 = min(x + w, width), min(y + h, height)
    if x >= width or y >= height or x1 <= x or y1 <= y:
        raise ValueError(f"roi {roi} lies outside the {width}x{height} frame")
    return image[y:y1, x:x1]


def crop_box(height: int, width: int, spec: InputSpec) -> tuple[int, int, int, int]:
    """The part of an ``height`` x ``width`` image that the model sees, in its pixels.

    Returns:
        ``(x0, y0, x1, y1)``: the centre crop of :func:`resize_and_crop`
        mapped back to the source image.
    """
    new_h, new_w = resized_shape(height, width, spec.resize)
    top, left = (new_h - spec.size) // 2, (new_w - spec.size) // 2
    sy, sx = height / new_h, width / new_w
    return (
        round(left * sx),
        round(top * sy),
        min(width, round((left + spec.size) * sx)),
        min(height, round((top + spec.size) * sy)),
    )
