"""Build a TensorRT engine for this box's GPU from a bundle's ONNX model.

Precision comes from the ONNX itself, built as a strongly typed network
(TensorRT >= 10): ``model.fp16.onnx`` for FP16, the S8S8 Q/DQ model (int8
convolutions, fp16 everywhere else) for INT8, ``model.onnx`` for FP32.
TensorRT 10.1 deprecated implicit INT8 calibration and TensorRT 11 removed it
along with the FP16/INT8 builder flags. The graph is first checked against
the parser's rules on the CPU (:mod:`deploy.tensorrt_check`). The engine and its
:class:`~edge_inspector.backends.tensorrt_engine.EngineInfo` JSON go to
``<bundle>/engines/``, outside the manifest's hashed files: they are built on
the box. A Jetson build takes minutes, so phases are logged as they run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

from deploy.tensorrt_check import check_model, format_violations
from edge_inspector.backends.cuda_buffers import cuda_device
from edge_inspector.backends.tensorrt_engine import (
    ENGINES_DIR,
    EngineInfo,
    engine_path,
    gpu_slug,
    import_tensorrt,
    make_trt_logger,
    source_variant,
)
from edge_inspector.bundle import IMAGE, Bundle, Precision
from edge_inspector.errors import BackendError, BundleError

__all__ = ["TIMING_CACHE", "build_engine"]

log = logging.getLogger(__name__)

TIMING_CACHE = "timing.cache"


def _write_atomic(path: Path, data: Any) -> None:
    """Write bytes (or any buffer) to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _progress_monitor(trt: ModuleType) -> Any:
    """A ``trt.IProgressMonitor`` logging phases: top two levels at INFO, deeper at DEBUG."""

    class _LogProgress(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()  # TensorRT may call from several threads
            self._phases: dict[str, tuple[int, float]] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                depth = 0 if parent_phase is None else self._phases.get(parent_phase, (-1, 0.0))[0] + 1
                self._phases[phase_name] = (depth, time.monotonic())
            level = logging.INFO if depth <= 1 else logging.DEBUG
            log.log(level, "%s%s: started (%d steps)", "  " * depth, phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            log.debug("%s: step %d done", phase_name, step)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                depth, started = self._phases.pop(phase_name, (0, time.monotonic()))
            level = logging.INFO if depth <= 1 else logging.DEBUG
            log.log(level, "%s%s: finished in %.1f s", "  " * depth, phase_name, time.monotonic() - started)

    return _LogProgress()


def _attach_timing_cache(config: Any, path: Path) -> Any:
    """Load the timing cache from ``path`` when usable, else start an empty one."""
    if path.is_file():
        cache = config.create_timing_cache(path.read_bytes())
        if cache is not None and config.set_timing_cache(cache, False):
            log.info("timing cache: loaded %s", path)
            return cache
        log.warning("timing cache %s does not fit this GPU or TensorRT; starting a new one", path)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


def build_engine(
    bundle: Bundle,
    precision: Precision,
    *,
    max_batch: int = 8,
    workspace_mib: int = 1024,
    timing_cache: Path | None = None,
) -> EngineInfo:
    """Build, save and describe the engine of a precision for this GPU.

    Args:
        bundle: a loaded bundle; the engine goes to ``bundle.root / "engines"``.
        precision: fp16 (``model.fp16.onnx``), int8 (the S8S8 Q/DQ model) or fp32.
        max_batch: largest batch the engine accepts; the optimization profile
            runs from 1 to ``max_batch`` and is tuned for ``max_batch``.
        workspace_mib: builder workspace memory limit.
        timing_cache: timing cache file, loaded when present and saved after
            the build; default ``bundle.root / "engines" / "timing.cache"``.

    Returns:
        The engine's info, also written as JSON beside the engine.

    Raises:
        BackendError: TensorRT (>= 10) or pycuda missing, no GPU, the ONNX
            does not parse (the parser's errors are listed) or the build fails.
        BundleError: the bundle lacks the ONNX variant for ``precision``, or
            it breaks a rule of TensorRT's parser (checked first, on the CPU,
            by :mod:`deploy.tensorrt_check`).
    """
    if max_batch < 1 or workspace_mib < 1:
        raise BackendError(f"max_batch and workspace_mib must be positive, got {max_batch} and {workspace_mib}")
    source = source_variant(bundle.manifest, precision).file
    onnx_path = bundle.path(source)
    violations = check_model(onnx.load(str(onnx_path)))
    if violations:
        raise BundleError(format_violations(onnx_path, violations))
    trt = import_tensorrt()
    gpu_name, cc = cuda_device(0)
    size = bundle.manifest.input.size
    out = engine_path(bundle.root, precision, gpu_slug(gpu_name, cc))
    out.parent.mkdir(parents=True, exist_ok=True)
    cache_path = Path(timing_cache) if timing_cache is not None else bundle.root / ENGINES_DIR / TIMING_CACHE
    log.info(
        "building %s engine from %s for %s (cc %s), TensorRT %s, batch 1..%d",
        precision.value,
        source,
        gpu_name,
        cc,
        trt.__version__,
        max_batch,
    )

    trt_logger = make_trt_logger(trt)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no details"
        raise BackendError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if inputs != [IMAGE]:
        raise BackendError(f"{onnx_path}: expected one input {IMAGE!r}, got {inputs}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(IMAGE, (1, size, size, 3), (max_batch, size, size, 3), (max_batch, size, size, 3))
    config.add_optimization_profile(profile)
    monitor = _progress_monitor(trt)
    config.progress_monitor = monitor
    cache = _attach_timing_cache(config, cache_path)

    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine from {onnx_path}; see the TensorRT log lines above")
    _write_atomic(out, serialized)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(cache_path, cache.serialize())

    info = EngineInfo(
        precision=precision,
        engine_file=out.name,
        source_onnx=source,
        source_sha256=bundle.sha256(source),
        gpu_name=gpu_name,
        compute_capability=cc,
        tensorrt_version=str(trt.__version__),
        max_batch=max_batch,
        input_size=size,
        built_at=datetime.now(timezone.utc),
    )
    _write_atomic(out.with_suffix(".json"), (info.model_dump_json(indent=2) + "\n").encode())
    log.info(
        "wrote %s (%.1f MiB) in %.0f s; timing cache %s",
        out,
        out.stat().st_size / 2**20,
        time.monotonic() - started,
        cache_path,
    )
    return info
