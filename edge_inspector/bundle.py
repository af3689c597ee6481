"""Contract 1: the model bundle, a directory the box loads.

``manifest.json`` (:class:`BundleManifest`) describes the model and lists
every file with its sha256; :func:`load_bundle` refuses a bundle whose files
do not match, naming the file. Every ONNX variant takes one input,
:data:`IMAGE` (uint8 ``[N, H, W, 3]`` RGB), and gives :data:`LOGITS`
(``[N, C]``) and :data:`CAM` (``[N, C, h, w]``). TensorRT engines are built on
the box and live in ``engines/`` beside the manifest, outside the hashed set
(see ``edge_inspector.backends.tensorrt_engine``).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_inspector.errors import BundleError, validation_problems
from edge_inspector.preprocess import InputSpec

__all__ = [
    "CAM",
    "IMAGE",
    "LOGITS",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleManifest",
    "FileEntry",
    "HeatmapSpec",
    "Precision",
    "TrainingSummary",
    "Variant",
    "load_bundle",
    "sha256_file",
    "write_manifest",
]

MANIFEST = "manifest.json"
IMAGE, LOGITS, CAM = "image", "logits", "cam"  # the ONNX models' tensor names
SCHEMA_VERSION = 1


class Precision(str, Enum):
    """Numeric precision of a model variant."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Model):
    """One file of the bundle."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Variant(_Model):
    """One ONNX model of the bundle and what it was measured to do."""

    file: str
    precision: Precision
    activations: Literal["float", "uint8", "int8"] = Field(
        "float", description="int8 activations: uint8 (U8S8, x86 CPUs) or int8 (S8S8, TensorRT)"
    )
    accuracy: float | None = None
    accuracy_delta: float | None = Field(None, description="accuracy minus the fp32 accuracy, same images")
    top1_agreement: float | None = Field(None, description="share of images where top-1 equals fp32's")
    max_logit_diff: float | None = None
    calibration: dict[str, Any] | None = Field(None, description="method, images per class, source fingerprint")


class HeatmapSpec(_Model):
    """Where the ``cam`` output comes from."""

    source_layer: str = "layer4"
    stride: int = Field(32, ge=1, description="input pixels per cam cell")


class TrainingSummary(_Model):
    """How the model was trained and how it scored on validation."""

    run: str
    epoch: int
    dataset_fingerprint: str
    train_counts: list[int]
    val_counts: list[int]
    validation: dict[str, Any]


class BundleManifest(_Model):
    """``manifest.json``: everything the box needs to know about the model."""

    schema_version: Literal[1] = SCHEMA_VERSION
    model_name: str
    model_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    classes: list[str] = Field(min_length=2)
    ok_class: str | None = Field(description="the class that means 'no defect'")
    input: InputSpec
    heatmap: HeatmapSpec = HeatmapSpec()
    threshold: float = Field(gt=0.0, lt=1.0, description="defect when 1 - P(ok) >= threshold")
    training: TrainingSummary | None = None
    variants: dict[str, Variant]
    files: dict[str, FileEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ok_class_is_a_class(self) -> BundleManifest:
        if self.ok_class is not None and self.ok_class not in self.classes:
            raise ValueError(f"ok_class {self.ok_class!r} is not one of the classes {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes repeat a name: {self.classes}")
        return self

    def variant(self, precision: Precision, activations: str | None = None) -> tuple[str, Variant]:
        """The variant of a precision (and int8 flavour), by name.

        Raises:
            BundleError: the bundle has no such variant.
        """
        for name, variant in self.variants.items():
            if variant.precision is precision and (activations is None or variant.activations == activations):
                return name, variant
        have = ", ".join(sorted(self.variants)) or "none"
        raise BundleError(f"bundle has no {precision.value} variant ({activations or 'any'}); it has: {have}")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Bundle:
    """A verified bundle directory."""

    def __init__(self, root: Path, manifest: BundleManifest) -> None:
        self.root = root
        self.manifest = manifest

    def path(self, name: str) -> Path:
        """Absolute path of a bundle file."""
        return self.root / name

    def sha256(self, name: str) -> str:
        """Recorded hash of a bundle file."""
        return self.manifest.files[name].sha256


def _read_manifest(root: Path) -> BundleManifest:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    if not path.is_file():
        raise BundleError(f"{path}: manifest missing; is {root} a bundle?")
    try:
        return BundleManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise BundleError(f"{path}: invalid manifest ({validation_problems(exc, whole='manifest')})") from exc


def load_bundle(root: Path, *, verify: bool = True) -> Bundle:
    """Read a bundle and check every listed file against its sha256.

    Raises:
        BundleError: the directory, manifest or a file is missing, or a file's
            size or hash differs; the message names the file.
    """
    root = Path(root)
    manifest = _read_manifest(root)
    for variant in manifest.variants.values():
        if variant.file not in manifest.files:
            raise BundleError(f"{root / MANIFEST}: variant file {variant.file} is not listed in files")
    if verify:
        for name, entry in manifest.files.items():
            path = root / name
            if not path.is_file():
                raise BundleError(f"{path}: listed in the manifest but missing")
            if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
                raise BundleError(f"{path}: sha256 mismatch; the file is corrupt or was changed after packing")
    return Bundle(root, manifest)


def write_manifest(root: Path, manifest: BundleManifest) -> BundleManifest:
    """Hash every variant file and write ``manifest.json`` atomically.

    Returns:
        The manifest as written, with ``files`` filled in.
    """
    files = {}
    for variant in manifest.variants.values():
        path = root / variant.file
        if not path.is_file():
            raise BundleError(f"{path}: variant file missing")
        files[variant.file] = FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
    final = manifest.model_copy(update={"files": files})
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(final.model_dump(mode="json"), indent=2) + "\n")
    os.replace(tmp, root / MANIFEST)
    return final
