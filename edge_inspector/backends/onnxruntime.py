"""ONNX Runtime backend: CPU everywhere, CUDA or TensorRT execution providers when present."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from edge_inspector.backends.base import Backend, BackendKind, BackendOptions, InferenceOutput
from edge_inspector.bundle import CAM, IMAGE, LOGITS, Bundle, Precision
from edge_inspector.errors import BackendError

__all__ = ["OnnxRuntimeBackend"]

log = logging.getLogger(__name__)

# int8 flavour each device wants: uint8 activations for x86 CPUs (VNNI u8 x s8), symmetric int8 for TensorRT
_INT8_ACTIVATIONS = {"cpu": "uint8", "cuda": "uint8", "tensorrt": "int8"}


class OnnxRuntimeBackend(Backend):
    """Runs a bundle variant with ONNX Runtime."""

    runtime_package: ClassVar[str] = "onnxruntime"
    kind: ClassVar[BackendKind] = BackendKind.ONNXRUNTIME

    def __init__(self, bundle: Bundle, precision: Precision, options: BackendOptions) -> None:
        super().__init__(bundle, precision, options)
        import onnxruntime as ort

        self.runtime = f"onnxruntime {ort.__version__}"
        providers = self._providers(ort.get_available_providers(), options.device)
        self.device = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}.get(
            providers[0], "cpu"
        )
        activations = _INT8_ACTIVATIONS[self.device] if precision is Precision.INT8 else None
        self.variant_name, variant = bundle.manifest.variant(precision, activations)
        self.file = bundle.path(variant.file)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        try:
            self._session = ort.InferenceSession(str(self.file), session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise BackendError(f"{self.file}: ONNX Runtime cannot load it ({exc})") from exc
        log.info("%s: %s on %s", self.runtime, self.file.name, self._session.get_providers()[0])

    @staticmethod
    def _providers(available: list[str], device: str) -> list[str]:
        wanted = {
            "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
            "cpu": [],
            "cuda": ["CUDAExecutionProvider"],
            "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
        }.get(device)
        if wanted is None:
            raise BackendError(f"onnxruntime: unknown device '{device}' (auto, cpu, cuda or tensorrt)")
        picked = [p for p in wanted if p in available]
        if device in {"cuda", "tensorrt"} and not picked:
            raise BackendError(f"onnxruntime: no {device} execution provider here (have {', '.join(available)})")
        return [*picked, "CPUExecutionProvider"]

    def infer(self, images: np.ndarray) -> InferenceOutput:
        logits, activation = self._session.run([LOGITS, CAM], {IMAGE: self.check_batch(images)})
        return InferenceOutput(np.asarray(logits, np.float32), np.asarray(activation, np.float32))

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
