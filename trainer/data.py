"""Labelled image folders: discovery, validation, stratified split, dataset.

Layout (see ``calibration/README.md``)::

    <root>/<class>/*.png|jpg|bmp|tif           split here, seeded and stratified
    <root>/train/<class>/...  <root>/val/<class>/...   split given by the engineer
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.errors import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetSplit",
    "ImageDataset",
    "Sample",
    "class_counts",
    "defect_box",
    "discover",
    "fingerprint",
    "load_rgb",
    "scan_folder",
    "stratified_split",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    path: Path
    label: int


@dataclass(frozen=True)
class DatasetSplit:
    """Class names and the training and validation samples."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    given_split: bool


def load_rgb(path: Path) -> np.ndarray | None:
    """Read an image as ``[H, W, 3]`` uint8 RGB; ``None`` when it cannot be decoded.

    Grayscale is replicated to three channels, alpha is dropped and 16-bit
    images are scaled to 8 bits.
    """
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def scan_folder(
    root: Path, classes: Sequence[str] | None = None, *, allow_missing: bool = False
) -> tuple[list[str], list[Sample]]:
    """Find the classes and readable images under ``root/<class>/``.

    Args:
        root: the folder holding one sub-folder per class.
        classes: expected class names (for a validation folder or a trained
            model); every folder must be one of them.
        allow_missing: accept expected classes without images (evaluation).

    Returns:
        The class names and the readable samples, sorted.

    Raises:
        DatasetError: the folder is missing, has fewer than two classes, an
            unknown class, or a class without a readable image.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder not found")
    found = [d.name for d in _class_dirs(root)]
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise DatasetError(
                f"{root}: found {len(classes)} class folder(s) {classes}; a classifier needs at least two "
                "(for example 'ok' and one defect)"
            )
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DatasetError(f"{root}: class folder(s) {unknown} are not among the classes {list(classes)}")
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        folder = root / name
        paths = _images_in(folder) if folder.is_dir() else []
        readable = [p for p in paths if _readable(p)]
        if not readable and not allow_missing:
            raise DatasetError(f"{folder}: class '{name}' has no readable images")
        samples.extend(Sample(p, label) for p in readable)
    return list(classes), samples


def _readable(path: Path) -> bool:
    if load_rgb(path) is None:
        log.warning("skipping unreadable image %s", path)
        return False
    return True


def stratified_split(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split each class the same way: ``val_fraction`` of it to validation.

    Every class with at least two images keeps one in each part. The split
    depends only on the seed and the file paths, not on their order.
    """
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted({s.label for s in samples}):
        members = sorted((s for s in samples if s.label == label), key=lambda s: str(s.path))
        order = rng.permutation(len(members))
        n_val = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val.extend(members[i] for i in order[:n_val])
        train.extend(members[i] for i in order[n_val:])
    return train, val


def discover(root: Path, *, val_fraction: float, seed: int) -> DatasetSplit:
    """Load an image folder, using its ``train/`` and ``val/`` split when present.

    Raises:
        DatasetError: see :func:`scan_folder`.
    """
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, train = scan_folder(root / "train")
        _, val = scan_folder(root / "val", classes)
        return DatasetSplit(classes, train, val, given_split=True)
    classes, samples = scan_folder(root)
    train, val = stratified_split(samples, val_fraction, seed)
    return DatasetSplit(classes, train, val, given_split=False)


def class_counts(samples: Sequence[Sample], num_classes: int) -> list[int]:
    """Images per class label."""
    counts = [0] * num_classes
    for sample in samples:
        counts[sample.label] += 1
    return counts


def fingerprint(samples: Sequence[Sample], root: Path) -> str:
    """sha256 over the relative paths, labels and bytes of the samples."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: str(s.path)):
        rel = sample.path.relative_to(root) if sample.path.is_relative_to(root) else sample.path
        digest.update(f"{rel}\0{sample.label}\0".encode())
        digest.update(sample.path.read_bytes())
    return digest.hexdigest()


def defect_box(sample: Sample) -> tuple[float, float, float, float] | None:
    """The defect box ``(x0, y0, x1, y1)`` in the image's pixels from the sidecar ``<image>.json``; None without one.

    The synthetic generator writes ``{"box": [x0, y0, x1, y1]}`` (x1, y1 exclusive) for every defect;
    engineers may add them to their own images. An unreadable or box-less sidecar counts as none.
    """
    sidecar = sample.path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        box = json.loads(sidecar.read_text()).get("box")
        x0, y0, x1, y1 = (float(v) for v in box)
    except (ValueError, TypeError, OSError, AttributeError):
        return None
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


class ImageDataset(Dataset[tuple[torch.Tensor, ...]]):
    """Samples decoded to RGB and passed through an albumentations pipeline.

    Items are ``(image, label)``; with ``boxes``, ``(image, label, box)`` where
    ``box`` is the sidecar's defect box carried through the pipeline's geometry
    (a transform built with ``bbox_params``, label field ``box_labels``), NaN
    when the image has none or the augmentation cut it away.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable[..., dict], *, boxes: bool = False) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        sample = self.samples[index]
        image = load_rgb(sample.path)
        if image is None:  # the file changed after it was scanned
            raise DatasetError(f"{sample.path}: image became unreadable during training")
        if not self.boxes:
            return self.transform(image=image)["image"], sample.label
        box = defect_box(sample)
        clipped = [b for b in [box and _clip(box, image.shape[1], image.shape[0])] if b]
        out = self.transform(image=image, bboxes=clipped, box_labels=[0] * len(clipped))
        boxes = out["bboxes"]
        kept = torch.as_tensor(boxes[0], dtype=torch.float32) if len(boxes) else torch.full((4,), float("nan"))
        return out["image"], sample.label, kept


def _clip(box: tuple[float, ...], width: int, height: int) -> tuple[float, ...] | None:
    x0, y0, x1, y1 = max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)), min(box[3], float(height))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
