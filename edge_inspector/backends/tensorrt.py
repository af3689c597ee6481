"""TensorRT backend: runs the engine built on this box for this GPU.

The engine and its record are checked by :mod:`edge_inspector.backends.tensorrt_engine`;
buffers move through :class:`~edge_inspector.backends.cuda_buffers.CudaBuffers`.
``tensorrt`` and ``pycuda`` are imported inside functions only, so this
module imports on machines without them.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import ClassVar

import numpy as np

from edge_inspector.backends.base import Backend, BackendKind, BackendOptions, InferenceOutput
from edge_inspector.backends.cuda_buffers import CudaBuffers, cuda_device
from edge_inspector.backends.tensorrt_engine import (
    ENGINES_DIR,
    check_engine,
    checked_context,
    engine_path,
    gpu_slug,
    import_tensorrt,
    make_trt_logger,
    rebuild_hint,
    require_tensorrt_version,
)
from edge_inspector.bundle import CAM, IMAGE, LOGITS, Bundle, Precision
from edge_inspector.errors import BackendError, EngineMismatchError

__all__ = ["TensorRTBackend"]

log = logging.getLogger(__name__)

_OUTPUTS = (LOGITS, CAM)


class TensorRTBackend(Backend):
    """Runs the engine built on this box for the bundle's precision."""

    runtime_package: ClassVar[str] = "tensorrt"
    kind: ClassVar[BackendKind] = BackendKind.TENSORRT

    @classmethod
    def available(cls) -> bool:
        """True when tensorrt (>= 10) and pycuda import and a CUDA device exists."""
        try:
            import pycuda.driver as cuda
            import tensorrt

            require_tensorrt_version(str(tensorrt.__version__))
            cuda.init()
            return cuda.Device.count() > 0
        except Exception:  # any failure means "not here"; never raise from a probe
            return False

    def __init__(self, bundle: Bundle, precision: Precision, options: BackendOptions) -> None:
        """Load and check the engine, set up the CUDA context and buffers.

        Raises:
            BackendError: tensorrt/pycuda missing, no CUDA device, or the engine cannot run.
            EngineMismatchError: no engine for this GPU, or built for another GPU,
                TensorRT version or ONNX model; the message says how to rebuild.
        """
        super().__init__(bundle, precision, options)
        self._lock = threading.Lock()
        self._cuda: CudaBuffers | None = None
        trt = import_tensorrt()
        self._gpu_name, self._cc = cuda_device(0)
        self._trt_version = str(trt.__version__)
        self._path = engine_path(bundle.root, precision, gpu_slug(self._gpu_name, self._cc))
        self.info = check_engine(self._path, bundle, precision, (self._gpu_name, self._cc), self._trt_version)
        self._max_batch = self.info.max_batch
        cuda = self._cuda = CudaBuffers(0)
        try:
            with cuda.active():
                self._trt_logger = make_trt_logger(trt)
                self._runtime = trt.Runtime(self._trt_logger)
                self._engine = self._runtime.deserialize_cuda_engine(self._path.read_bytes())
                if self._engine is None:
                    raise EngineMismatchError(
                        f"{self._path}: TensorRT {self._trt_version} cannot load this engine; "
                        + rebuild_hint(bundle, precision)
                    )
                self._context = checked_context(self._engine.create_execution_context(), self._path)
                self._allocate(trt, cuda)
        except BaseException:
            self.close()
            raise
        log.info("tensorrt: %s on %s (cc %s), max batch %d", self._path.name, self._gpu_name, self._cc, self._max_batch)

    def _allocate(self, trt: ModuleType, cuda: CudaBuffers) -> None:
        engine = self._engine
        self._names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in self._names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [IMAGE] or not set(_OUTPUTS) <= set(self._names):
            raise BackendError(f"{self._path}: expected input {IMAGE!r} and outputs {_OUTPUTS}, got {self._names}")
        self._outputs = [n for n in self._names if n not in inputs]
        full = (self._max_batch, *self.input_shape)
        if not self._context.set_input_shape(IMAGE, full):
            raise BackendError(f"{self._path}: engine rejects input shape {full}")
        for name in self._names:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            cuda.allocate(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))

    def infer(self, images: np.ndarray) -> InferenceOutput:
        """Run a uint8 ``[N, H, W, 3]`` batch, in chunks of the engine's max batch.

        Raises:
            BackendError: bad batch, closed backend or a TensorRT failure.
        """
        batch = self.check_batch(images)
        chunks: list[dict[str, np.ndarray]] = []
        with self._lock:
            cuda = self._cuda
            if cuda is None:
                raise BackendError("tensorrt: backend is closed")
            with cuda.active():
                for start in range(0, max(len(batch), 1), self._max_batch):
                    chunks.append(self._run(cuda, batch[start : start + self._max_batch]))
        out = {name: np.concatenate([c[name] for c in chunks]) for name in _OUTPUTS}
        return InferenceOutput(logits=out[LOGITS], activation=out[CAM])

    def _run(self, cuda: CudaBuffers, chunk: np.ndarray) -> dict[str, np.ndarray]:
        n = len(chunk)
        if n == 0:
            return {name: np.zeros((0, *cuda.host(name).shape[1:]), np.float32) for name in _OUTPUTS}
        cuda.host(IMAGE)[:n] = chunk
        cuda.upload(IMAGE, n)
        if not self._context.set_input_shape(IMAGE, (n, *self.input_shape)):
            raise BackendError(f"tensorrt: engine rejects batch of {n}")
        for name in self._names:
            self._context.set_tensor_address(name, cuda.address(name))
        if not self._context.execute_async_v3(cuda.stream.handle):
            raise BackendError("tensorrt: execute_async_v3 failed; see the TensorRT log lines above")
        for name in self._outputs:
            cuda.download(name, n)
        cuda.synchronize()
        return {name: cuda.host(name)[:n].astype(np.float32, copy=True) for name in _OUTPUTS}

    def describe(self) -> dict[str, str]:
        """Backend, precision, GPU, engine and source files, TensorRT version."""
        return {
            "backend": self.kind.value,
            "precision": self.precision.value,
            "variant": next(
                (n for n, v in self.bundle.manifest.variants.items() if v.file == self.info.source_onnx), ""
            ),
            "device": f"{self._gpu_name} (cc {self._cc})",
            "file": self.info.source_onnx,
            "engine": f"{ENGINES_DIR}/{self._path.name}",
            "runtime": f"tensorrt {self._trt_version}",
        }

    def close(self) -> None:
        """Release the engine, buffers and CUDA context (idempotent, any thread)."""

        def release() -> None:
            # TensorRT objects free device memory: drop them while the context is current.
            for attr in ("_context", "_engine", "_runtime"):
                if hasattr(self, attr):
                    delattr(self, attr)

        with self._lock:
            cuda, self._cuda = getattr(self, "_cuda", None), None
            if cuda is not None:
                cuda.close(release)
