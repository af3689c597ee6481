"""The one interface every inference backend implements.

A backend loads one variant of a bundle, takes a uint8 RGB batch
``[N, H, W, 3]`` and returns ``logits [N, C]`` and the class activation maps
``[N, C, h, w]`` (the ONNX output ``cam``) as float32. Heavy runtimes (TensorRT, pycuda, OpenVINO) are imported inside
their backend module only.
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np

from edge_inspector.bundle import Bundle, Precision
from edge_inspector.errors import BackendError

__all__ = ["Backend", "BackendKind", "BackendOptions", "InferenceOutput"]


class BackendKind(str, Enum):
    """Inference runtimes; ``auto`` picks the best one present."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"


@dataclass(frozen=True)
class InferenceOutput:
    """Model outputs for one batch."""

    logits: np.ndarray
    activation: np.ndarray
    """Class activation maps ``[N, C, h, w]``."""


@dataclass(frozen=True)
class BackendOptions:
    """Settings shared by backends; each uses what applies to it."""

    threads: int | None = None
    max_batch: int = 8
    device: str = "auto"


class Backend(abc.ABC):
    """Base class of every backend; use it as a context manager."""

    kind: ClassVar[BackendKind]

    def __init__(self, bundle: Bundle, precision: Precision, options: BackendOptions) -> None:
        self.bundle = bundle
        self.precision = precision
        self.options = options
        spec = bundle.manifest.input
        self.input_shape = (spec.size, spec.size, 3)

    runtime_package: ClassVar[str]

    @classmethod
    def available(cls) -> bool:
        """Whether this runtime can run on this machine at all (default: its package is installed)."""
        return importlib.util.find_spec(cls.runtime_package) is not None

    @abc.abstractmethod
    def infer(self, images: np.ndarray) -> InferenceOutput:
        """Run a batch of preprocessed ``[N, H, W, 3]`` uint8 RGB images."""

    # set by each backend's __init__
    variant_name: str
    device: str
    file: Path
    runtime: str

    def describe(self) -> dict[str, str]:
        """What runs: backend, precision, variant, device, model file and runtime version."""
        return {
            "backend": self.kind.value,
            "precision": self.precision.value,
            "variant": self.variant_name,
            "device": self.device,
            "file": self.file.name,
            "runtime": self.runtime,
        }

    @abc.abstractmethod
    def close(self) -> None:
        """Release runtime resources (idempotent)."""

    def check_batch(self, images: np.ndarray) -> np.ndarray:
        """Validate a batch and return it C-contiguous.

        Raises:
            BackendError: wrong dtype or shape.
        """
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise BackendError(
                f"{self.kind.value}: expected uint8 [N, {', '.join(map(str, self.input_shape))}], "
                f"got {images.dtype} {list(images.shape)}"
            )
        return np.ascontiguousarray(images)

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
