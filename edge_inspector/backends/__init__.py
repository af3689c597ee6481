"""Inference backends behind one interface; ``create_backend`` picks and loads one."""

from __future__ import annotations

import importlib
import logging

from edge_inspector.backends.base import Backend, BackendKind, BackendOptions, InferenceOutput
from edge_inspector.bundle import Bundle, Precision
from edge_inspector.errors import BackendError

__all__ = [
    "Backend",
    "BackendKind",
    "BackendOptions",
    "InferenceOutput",
    "available_backends",
    "backend_class",
    "create_backend",
]

log = logging.getLogger(__name__)

_MODULES = {
    BackendKind.TENSORRT: ("edge_inspector.backends.tensorrt", "TensorRTBackend"),
    BackendKind.OPENVINO: ("edge_inspector.backends.openvino", "OpenVinoBackend"),
    BackendKind.ONNXRUNTIME: ("edge_inspector.backends.onnxruntime", "OnnxRuntimeBackend"),
}


def backend_class(kind: BackendKind) -> type[Backend]:
    """The class of a backend (importing its module, not its runtime)."""
    module, name = _MODULES[kind]
    return getattr(importlib.import_module(module), name)


def available_backends() -> list[BackendKind]:
    """Backends whose runtime is usable here, best first."""
    return [kind for kind in _MODULES if backend_class(kind).available()]


def create_backend(
    bundle: Bundle, kind: BackendKind, precision: Precision, options: BackendOptions | None = None
) -> Backend:
    """Load ``bundle`` in a backend; ``auto`` tries TensorRT, then OpenVINO, then ONNX Runtime.

    With ``auto``, a backend that cannot run this bundle (no engine built for
    this GPU, say) is logged and the next one is tried.

    Raises:
        BackendError: the requested backend is missing or cannot load the bundle.
    """
    options = options or BackendOptions()
    if kind is not BackendKind.AUTO:
        cls = backend_class(kind)
        if not cls.available():
            raise BackendError(f"backend {kind.value} is not available on this machine")
        return cls(bundle, precision, options)
    errors = []
    for candidate in available_backends():
        try:
            return backend_class(candidate)(bundle, precision, options)
        except BackendError as exc:
            log.warning("auto backend: skipping %s: %s", candidate.value, exc)
            errors.append(f"{candidate.value}: {exc}")
    raise BackendError("no backend can run this bundle: " + "; ".join(errors))
