"""The pycuda layer of the TensorRT backend: the device, its context, one stream and the buffers.

The only pycuda code, kept small so it can move to cuda-python without
touching the rest. ``pycuda`` is imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from edge_inspector.backends.tensorrt_engine import INSTALL_HINT
from edge_inspector.errors import BackendError

__all__ = ["CudaBuffers", "cuda_device", "import_pycuda"]


def import_pycuda() -> ModuleType:
    """Import ``pycuda.driver``; raises BackendError saying what to install otherwise."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendError(f"pycuda is not installed: {INSTALL_HINT}") from exc
    return cuda


def cuda_device(index: int = 0) -> tuple[str, str]:
    """Name and compute capability (``"8.7"``) of a CUDA device; raises BackendError without one."""
    cuda = import_pycuda()
    try:
        cuda.init()
        device = cuda.Device(index)
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"
    except cuda.Error as exc:
        raise BackendError(f"no usable CUDA device {index}: {exc}") from exc


class CudaBuffers:
    """The pycuda layer: one context, one stream, buffers allocated once.

    The context is made current only inside :meth:`active`, so any thread
    (the daemon's inference worker) can use it.
    """

    def __init__(self, device_index: int = 0) -> None:
        self._cuda = import_pycuda()
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
