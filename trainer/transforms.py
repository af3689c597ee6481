"""Albumentations pipelines for training and validation.

Validation uses exactly the edge box's geometry
(:func:`edge_inspector.preprocess.resize_and_crop`); a test holds them equal.
"""

from __future__ import annotations

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from edge_inspector.preprocess import InputSpec
from trainer.config import Augment

__all__ = ["eval_geometry", "eval_transform", "train_transform"]


def eval_geometry(spec: InputSpec) -> A.Compose:
    """Resize the shorter side, then centre-crop: uint8 in, uint8 out."""
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=spec.resize, interpolation=cv2.INTER_LINEAR, area_for_downscale="image"),
            A.CenterCrop(height=spec.size, width=spec.size),
        ]
    )


def _to_tensor(spec: InputSpec) -> list[A.BasicTransform]:
    return [A.Normalize(mean=spec.mean, std=spec.std, max_pixel_value=255.0), ToTensorV2()]


def eval_transform(spec: InputSpec) -> A.Compose:
    """Validation pipeline: edge geometry, ImageNet normalisation, CHW tensor."""
    return A.Compose([*eval_geometry(spec).transforms, *_to_tensor(spec)])


def train_transform(spec: InputSpec, kind: Augment = Augment.DEFECT, *, boxes: bool = False) -> A.Compose:
    """Training pipeline, ``defect`` (ours) or ``imagenet`` (torchvision's reference recipe).

    With ``boxes``, defect boxes (``bboxes``, pixels, label field ``box_labels``)
    follow the geometry; one left with under half its area is dropped.

    ``defect``: the crop keeps most of the image (scale 0.7 to 1), since
    defects are small and a tighter crop would often cut them out while
    keeping the defect label; boards have no preferred orientation, so all
    flips and quarter turns are fair; brightness and contrast vary.
    ``imagenet``: random-resized crop over 8 to 100 % of the area and a
    horizontal flip, for comparison (``bench/bench_recipe.py``).
    """
    box_params = A.BboxParams(format="pascal_voc", label_fields=["box_labels"], min_visibility=0.5) if boxes else None
    if kind is Augment.IMAGENET:
        return A.Compose(
            [
                A.RandomResizedCrop(size=(spec.size, spec.size), interpolation=cv2.INTER_LINEAR),
                A.HorizontalFlip(p=0.5),
                *_to_tensor(spec),
            ],
            bbox_params=box_params,
        )
    return A.Compose(
        [
            A.RandomResizedCrop(
                size=(spec.size, spec.size),
                scale=(0.7, 1.0),
                ratio=(0.85, 1.18),
                interpolation=cv2.INTER_LINEAR,
                area_for_downscale="image",
            ),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),
            *_to_tensor(spec),
        ],
        bbox_params=box_params,
    )
