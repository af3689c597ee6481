"""TensorRT backend: runs an engine built on this box for this GPU.

Engines live in ``<bundle>/engines/`` as ``model.<precision>.<gpu>.engine``
with an :class:`EngineInfo` JSON beside them (``deploy.engine_build`` writes
both). An engine is tied to a GPU, a compute capability, a TensorRT version
and the exact ONNX it came from; any difference is refused with
:class:`~edge_inspector.errors.EngineMismatchError`, which says how to rebuild.

``tensorrt`` and ``pycuda`` are imported inside functions only, so this
module imports on machines without them. Buffers move through
:class:`_CudaBuffers`, the only pycuda code, kept small so it can move to
cuda-python without touching the rest.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_inspector.backends.base import Backend, BackendKind, BackendOptions, InferenceOutput
from edge_inspector.bundle import Bundle, BundleManifest, Precision, Variant
from edge_inspector.errors import BackendError, EngineMismatchError

__all__ = [
    "ENGINES_DIR",
    "INPUT",
    "OUTPUTS",
    "MIN_TENSORRT",
    "EngineInfo",
    "TensorRTBackend",
    "checked_context",
    "cuda_device",
    "engine_path",
    "gpu_slug",
    "import_tensorrt",
    "make_trt_logger",
    "read_engine_info",
    "require_tensorrt_version",
    "source_variant",
]

logger = logging.getLogger(__name__)

ENGINES_DIR = "engines"
INPUT = "image"
OUTPUTS = ("logits", "cam")
MIN_TENSORRT = 10
_INSTALL = "pip install 'edge-inspector[tensorrt]' (the TensorRT wheel for this box; on a Jetson, JetPack's)"


class EngineInfo(BaseModel):
    """What an engine was built from and for: ``<engine>.json`` beside it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    precision: Precision
    engine_file: str = Field(description="file name inside engines/")
    source_onnx: str = Field(description="bundle file the engine was built from")
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    gpu_name: str
    compute_capability: str = Field(pattern=r"^\d+\.\d+$", description="e.g. 8.7 for Jetson Orin")
    tensorrt_version: str
    max_batch: int = Field(ge=1)
    input_size: int = Field(ge=1)
    built_at: datetime


def require_tensorrt_version(version: str) -> None:
    """Refuse TensorRT before 10: no strongly typed networks, implicit batch by default."""
    match = re.match(r"(\d+)", version)
    if match is None or int(match.group(1)) < MIN_TENSORRT:
        raise BackendError(f"TensorRT {version} found; this needs TensorRT >= {MIN_TENSORRT} (JetPack >= 6.1)")


def import_tensorrt() -> ModuleType:
    """Import ``tensorrt`` (10 or later); raises BackendError saying what to install otherwise."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(f"TensorRT is not installed: {_INSTALL}") from exc
    require_tensorrt_version(str(tensorrt.__version__))
    return tensorrt


def _import_pycuda() -> ModuleType:
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendError(f"pycuda is not installed: {_INSTALL}") from exc
    return cuda


def cuda_device(index: int = 0) -> tuple[str, str]:
    """Name and compute capability (``"8.7"``) of a CUDA device; raises BackendError without one."""
    cuda = _import_pycuda()
    try:
        cuda.init()
        device = cuda.Device(index)
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"
    except cuda.Error as exc:
        raise BackendError(f"no usable CUDA device {index}: {exc}") from exc


def gpu_slug(gpu_name: str, compute_capability: str) -> str:
    """A file-name-safe tag of a GPU, e.g. ``nvidia-h200-sm90``."""
    name = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"
    return f"{name}-sm{compute_capability.replace('.', '')}"


def engine_path(root: Path, precision: Precision, slug: str) -> Path:
    """Where the engine of a precision for a GPU lives (its info: ``.json``)."""
    return Path(root) / ENGINES_DIR / f"model.{precision.value}.{slug}.engine"


def source_variant(manifest: BundleManifest, precision: Precision) -> Variant:
    """The ONNX variant TensorRT builds for a precision (raises BundleError when missing).

    INT8 is always the S8S8 model (symmetric int8 activations); U8S8 is for CPUs.
    """
    _, variant = manifest.variant(precision, "int8" if precision is Precision.INT8 else None)
    return variant


def read_engine_info(path: Path) -> EngineInfo:
    """Read an engine's JSON; raises EngineMismatchError when missing or invalid."""
    try:
        return EngineInfo.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise EngineMismatchError(f"{path}: engine info missing or invalid ({exc.__class__.__name__})") from exc


@functools.cache
def make_trt_logger(trt: ModuleType) -> Any:
    """The process's ``trt.ILogger``, forwarding TensorRT's messages to Python logging.

    One instance per process: TensorRT keeps the first logger it is given as
    its global logger, so that object must never be freed.
    """
    sev = trt.ILogger.Severity
    levels = {
        sev.INTERNAL_ERROR: logging.CRITICAL,
        sev.ERROR: logging.ERROR,
        sev.WARNING: logging.WARNING,
        sev.INFO: logging.INFO,
        sev.VERBOSE: logging.DEBUG,
    }
    trt_log = logging.getLogger(f"{__name__}.trt")

    class _LoggingBridge(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            if trt_log.isEnabledFor(level):
                trt_log.log(level, "%s", msg)

    return _LoggingBridge()


def checked_context(context: Any, path: Path) -> Any:
    """An execution context, or BackendError when TensorRT returned None (out of GPU memory)."""
    if context is None:
        raise BackendError(
            f"{path}: TensorRT could not create an execution context, most likely for lack of GPU memory; "
            "free GPU memory (other processes, a smaller --max-batch engine) and restart"
        )
    return context


def _rebuild_hint(bundle: Bundle, precision: Precision) -> str:
    return f"run `edge-deploy build-engine --bundle {bundle.root} --precision {precision.value}` to rebuild it"


class _CudaBuffers:
    """The pycuda layer: one context, one stream, buffers allocated once.

    The context is made current only inside :meth:`active`, so any thread
    (the daemon's inference worker) can use it.
    """

    def __init__(self, device_index: int = 0) -> None:
        self._cuda = _import_pycuda()
        try:
            self._cuda.init()
            self._ctx = self._cuda.Device(device_index).make_context()  # pushed: current now
        except self._cuda.Error as exc:
            raise BackendError(f"tensorrt: cannot create a CUDA context on device {device_index}: {exc}") from exc
        try:
            self.stream = self._cuda.Stream()
        finally:
            self._cuda.Context.pop()
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make the context current on this thread for the block."""
        if self._ctx is None:
            raise BackendError("tensorrt: backend is closed")
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Page-locked host and device buffers for one tensor (inside :meth:`active`)."""
        host = self._cuda.pagelocked_empty(shape, dtype)
        self._host[name] = host
        self._device[name] = self._cuda.mem_alloc(max(host.nbytes, 1))

    def host(self, name: str) -> np.ndarray:
        """The page-locked host buffer of a tensor."""
        return self._host[name]

    def address(self, name: str) -> int:
        """Device address of a tensor's buffer."""
        return int(self._device[name])

    def upload(self, name: str, rows: int) -> None:
        """Queue a copy of the first ``rows`` rows host -> device."""
        self._cuda.memcpy_htod_async(self._device[name], self._host[name][:rows], self.stream)

    def download(self, name: str, rows: int) -> None:
        """Queue a copy of the first ``rows`` rows device -> host."""
        self._cuda.memcpy_dtoh_async(self._host[name][:rows], self._device[name], self.stream)

    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""
        self.stream.synchronize()

    def close(self, release: Any = None) -> None:
        """Free buffers and the context; ``release`` runs first, context current. Idempotent."""
        if self._ctx is None:
            return
        ctx, self._ctx = self._ctx, None
        ctx.push()
        try:
            if release is not None:
                release()
            for buffer in self._device.values():
                buffer.free()
            self._device.clear()
            self._host.clear()  # pinned memory is freed here, context current
            self.stream = None
        finally:
            # Detached while current, pycuda destroys and pops it from any thread;
            # detached while not current, from another thread, it would leak.
            ctx.detach()


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
        self._cuda: _CudaBuffers | None = None
        trt = import_tensorrt()
        self._gpu_name, self._cc = cuda_device(0)
        self._trt_version = str(trt.__version__)
        self._path = engine_path(bundle.root, precision, gpu_slug(self._gpu_name, self._cc))
        self.info = self._check_engine(bundle, precision)
        self._max_batch = self.info.max_batch
        cuda = self._cuda = _CudaBuffers(0)
        try:
            with cuda.active():
                self._trt_logger = make_trt_logger(trt)
                self._runtime = trt.Runtime(self._trt_logger)
                self._engine = self._runtime.deserialize_cuda_engine(self._path.read_bytes())
                if self._engine is None:
                    raise EngineMismatchError(
                        f"{self._path}: TensorRT {self._trt_version} cannot load this engine; "
                        + _rebuild_hint(bundle, precision)
                    )
                self._context = checked_context(self._engine.create_execution_context(), self._path)
                self._allocate(trt, cuda)
        except BaseException:
            self.close()
            raise
        logger.info(
            "tensorrt: %s on %s (cc %s), max batch %d", self._path.name, self._gpu_name, self._cc, self._max_batch
        )

    def _check_engine(self, bundle: Bundle, precision: Precision) -> EngineInfo:
        hint = _rebuild_hint(bundle, precision)
        if not self._path.is_file():
            found = sorted(p.name for p in self._path.parent.glob("*.engine")) if self._path.parent.is_dir() else []
            raise EngineMismatchError(
                f"no TensorRT {precision.value} engine for {self._gpu_name} (cc {self._cc}) at {self._path} "
                f"(found: {', '.join(found) or 'none'}); {hint}"
            )
        info = read_engine_info(self._path.with_suffix(".json"))
        source = source_variant(bundle.manifest, precision).file
        problems = []
        if (info.gpu_name, info.compute_capability) != (self._gpu_name, self._cc):
            problems.append(
                f"built for {info.gpu_name} (cc {info.compute_capability}), this is {self._gpu_name} (cc {self._cc})"
            )
        if info.tensorrt_version != self._trt_version:
            problems.append(f"built with TensorRT {info.tensorrt_version}, this box has {self._trt_version}")
        if info.source_onnx != source or info.source_sha256 != bundle.sha256(source):
            problems.append(f"built from another {source} than this bundle's")
        if info.precision is not precision or info.input_size != bundle.manifest.input.size:
            problems.append("built for another precision or input size")
        if problems:
            raise EngineMismatchError(f"{self._path}: " + "; ".join(problems) + f"; {hint}")
        return info

    def _allocate(self, trt: ModuleType, cuda: _CudaBuffers) -> None:
        engine = self._engine
        self._names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in self._names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [INPUT] or not set(OUTPUTS) <= set(self._names):
            raise BackendError(f"{self._path}: expected input {INPUT!r} and outputs {OUTPUTS}, got {self._names}")
        self._outputs = [n for n in self._names if n not in inputs]
        full = (self._max_batch, *self.input_shape)
        if not self._context.set_input_shape(INPUT, full):
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
        out = {name: np.concatenate([c[name] for c in chunks]) for name in OUTPUTS}
        return InferenceOutput(logits=out["logits"], cam=out["cam"])

    def _run(self, cuda: _CudaBuffers, chunk: np.ndarray) -> dict[str, np.ndarray]:
        n = len(chunk)
        if n == 0:
            return {name: np.zeros((0, *cuda.host(name).shape[1:]), np.float32) for name in OUTPUTS}
        cuda.host(INPUT)[:n] = chunk
        cuda.upload(INPUT, n)
        if not self._context.set_input_shape(INPUT, (n, *self.input_shape)):
            raise BackendError(f"tensorrt: engine rejects batch of {n}")
        for name in self._names:
            self._context.set_tensor_address(name, cuda.address(name))
        if not self._context.execute_async_v3(cuda.stream.handle):
            raise BackendError("tensorrt: execute_async_v3 failed; see the TensorRT log lines above")
        for name in self._outputs:
            cuda.download(name, n)
        cuda.synchronize()
        return {name: cuda.host(name)[:n].astype(np.float32, copy=True) for name in OUTPUTS}

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
