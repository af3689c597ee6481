"""OpenVINO backend for x86 line PCs without a GPU (extra ``[openvino]``).

OpenVINO's CPU plugin computes in bf16 by default on CPUs that support it;
this backend asks for f32 unless the variant is fp16, so FP32 means FP32 and
INT8 variants keep their int8 kernels with f32 where not quantized.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from edge_inspector.backends.base import Backend, BackendKind, BackendOptions, InferenceOutput
from edge_inspector.bundle import CAM, IMAGE, LOGITS, Bundle, Precision
from edge_inspector.errors import BackendError

__all__ = ["OpenVinoBackend"]

log = logging.getLogger(__name__)


class OpenVinoBackend(Backend):
    """Runs a bundle variant with OpenVINO on the CPU (or another OpenVINO device)."""

    runtime_package: ClassVar[str] = "openvino"
    kind: ClassVar[BackendKind] = BackendKind.OPENVINO

    def __init__(self, bundle: Bundle, precision: Precision, options: BackendOptions) -> None:
        super().__init__(bundle, precision, options)
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendError("openvino is not installed: pip install 'edge-inspector[openvino]'") from exc
        self.runtime = f"openvino {ov.get_version()}"
        activations = "uint8" if precision is Precision.INT8 else None  # x86: U8S8
        self.variant_name, variant = bundle.manifest.variant(precision, activations)
        self.file = bundle.path(variant.file)
        self.device = "CPU" if options.device in {"auto", "cpu"} else options.device.upper()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "f16" if precision is Precision.FP16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(self.file)), self.device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own text
            raise BackendError(f"{self.file}: OpenVINO cannot compile it for {self.device} ({exc})") from exc
        self._request = self._compiled.create_infer_request()
        self._logits = self._compiled.output(LOGITS)
        self._activation = self._compiled.output(CAM)
        log.info("%s: %s on %s", self.runtime, self.file.name, self.device)

    def infer(self, images: np.ndarray) -> InferenceOutput:
        result = self._request.infer({IMAGE: self.check_batch(images)})
        return InferenceOutput(
            np.array(result[self._logits], np.float32, copy=True),
            np.array(result[self._activation], np.float32, copy=True),
        )

    def close(self) -> None:
        self._request = None
        self._compiled = None
