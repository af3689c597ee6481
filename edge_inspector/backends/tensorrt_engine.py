"""TensorRT engines: the record beside each engine and the check that it fits this box.

Engines live in ``<bundle>/engines/`` as ``model.<precision>.<gpu>.engine``
with an :class:`EngineInfo` JSON beside them (``deploy.engine_build`` writes
both). An engine is tied to a GPU, a compute capability, a TensorRT version
and the exact ONNX it came from; :func:`check_engine` refuses any difference
with :class:`~edge_inspector.errors.EngineMismatchError`, which says how to
rebuild. ``tensorrt`` is imported inside functions only, so this module
imports on machines without it.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_inspector.bundle import Bundle, BundleManifest, Precision, Variant
from edge_inspector.errors import BackendError, EngineMismatchError

__all__ = [
    "ENGINES_DIR",
    "INSTALL_HINT",
    "MIN_TENSORRT",
    "EngineInfo",
    "check_engine",
    "checked_context",
    "engine_path",
    "gpu_slug",
    "import_tensorrt",
    "make_trt_logger",
    "read_engine_info",
    "rebuild_hint",
    "require_tensorrt_version",
    "source_variant",
]


ENGINES_DIR = "engines"
MIN_TENSORRT = 10
INSTALL_HINT = "pip install 'edge-inspector[tensorrt]' (the TensorRT wheel for this box; on a Jetson, JetPack's)"


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
        raise BackendError(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    require_tensorrt_version(str(tensorrt.__version__))
    return tensorrt


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


def rebuild_hint(bundle: Bundle, precision: Precision) -> str:
    """The command that rebuilds a bundle's engine for this box."""
    return f"run `edge-deploy build-engine --bundle {bundle.root} --precision {precision.value}` to rebuild it"


def check_engine(
    path: Path, bundle: Bundle, precision: Precision, gpu: tuple[str, str], trt_version: str
) -> EngineInfo:
    """The record of the engine at ``path``, checked against this bundle, GPU ``(name, cc)`` and TensorRT.

    Raises:
        EngineMismatchError: no engine there, no valid record, or one built for
            another GPU, TensorRT version, ONNX model, precision or input size.
    """
    gpu_name, cc = gpu
    hint = rebuild_hint(bundle, precision)
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.engine")) if path.parent.is_dir() else []
        raise EngineMismatchError(
            f"no TensorRT {precision.value} engine for {gpu_name} (cc {cc}) at {path} "
            f"(found: {', '.join(found) or 'none'}); {hint}"
        )
    info = read_engine_info(path.with_suffix(".json"))
    source = source_variant(bundle.manifest, precision).file
    problems = []
    if (info.gpu_name, info.compute_capability) != (gpu_name, cc):
        problems.append(f"built for {info.gpu_name} (cc {info.compute_capability}), this is {gpu_name} (cc {cc})")
    if info.tensorrt_version != trt_version:
        problems.append(f"built with TensorRT {info.tensorrt_version}, this box has {trt_version}")
    if info.source_onnx != source or info.source_sha256 != bundle.sha256(source):
        problems.append(f"built from another {source} than this bundle's")
    if info.precision is not precision or info.input_size != bundle.manifest.input.size:
        problems.append("built for another precision or input size")
    if problems:
        raise EngineMismatchError(f"{path}: " + "; ".join(problems) + f"; {hint}")
    return info
