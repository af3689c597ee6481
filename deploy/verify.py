"""Check a bundle end to end: hashes, every variant in every backend, accuracy and agreement."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.export import load_images
from deploy.timing import measure
from edge_inspector.backends import Backend, BackendKind, BackendOptions, available_backends, backend_class
from edge_inspector.bundle import Bundle, Precision, load_bundle
from edge_inspector.errors import BackendError
from trainer.evaluation import folder_samples, split_samples

__all__ = ["VerifyRow", "format_table", "verify_bundle"]

log = logging.getLogger(__name__)

# what each backend is asked to run; TensorRT only has engines built on the box
_PRECISIONS = {
    BackendKind.ONNXRUNTIME: (Precision.FP32, Precision.FP16, Precision.INT8),
    BackendKind.OPENVINO: (Precision.FP32, Precision.FP16, Precision.INT8),
    BackendKind.TENSORRT: (Precision.FP16, Precision.INT8),
}


@dataclass(frozen=True)
class VerifyRow:
    """One backend and precision on the verification images."""

    backend: str
    precision: str
    variant: str
    accuracy: float | None
    agreement: float | None
    max_logit_diff: float | None
    latency_ms: float | None
    error: str | None = None


def _images(bundle: Bundle, data: Path | None) -> tuple[np.ndarray, np.ndarray]:
    classes = bundle.manifest.classes
    if data is not None:
        return load_images(folder_samples(data, classes), bundle.manifest.input)
    run = bundle.manifest.training.run if bundle.manifest.training else None
    if run is None:
        raise BackendError("the bundle names no training run; pass --data")
    return load_images(split_samples(Path(run)), bundle.manifest.input)


def _run_all(backend: Backend, images: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate([backend.infer(images[i : i + batch]).logits for i in range(0, len(images), batch)])


def verify_bundle(bundle_dir: Path, *, data: Path | None = None, threads: int | None = None) -> list[VerifyRow]:
    """Load every variant in every available backend and score it.

    Agreement is top-1 agreement with ONNX Runtime FP32 on the same images.

    Raises:
        BundleError: a file is missing or its hash differs (checked first).
    """
    bundle = load_bundle(bundle_dir)
    images, labels = _images(bundle, data)
    options = BackendOptions(threads=threads, device="cpu")
    rows: list[VerifyRow] = []
    reference: np.ndarray | None = None
    # ONNX Runtime FP32 first: it is the reference every other row is compared with
    kinds = sorted(available_backends(), key=lambda k: k is not BackendKind.ONNXRUNTIME)
    for kind in kinds:
        for precision in _PRECISIONS[kind]:
            if not any(v.precision is precision for v in bundle.manifest.variants.values()):
                continue
            try:
                with backend_class(kind)(bundle, precision, options) as backend:
                    logits = _run_all(backend, images)
                    timing = measure(lambda b=backend: b.infer(images[:1]), batch=1, runs=10, budget_s=5.0)
                    variant = backend.describe().get("variant", precision.value)
            except BackendError as exc:
                rows.append(VerifyRow(kind.value, precision.value, "-", None, None, None, None, str(exc)))
                continue
            if reference is None:
                reference = logits
            rows.append(
                VerifyRow(
                    backend=kind.value,
                    precision=precision.value,
                    variant=variant,
                    accuracy=float((logits.argmax(1) == labels).mean()),
                    agreement=float((logits.argmax(1) == reference.argmax(1)).mean()),
                    max_logit_diff=float(np.abs(logits - reference).max()),
                    latency_ms=timing.median_ms,
                )
            )
    return rows


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def format_table(rows: list[VerifyRow]) -> str:
    """A markdown table of verification rows."""
    lines = [
        "| backend | precision | variant | accuracy | agreement with fp32 | max logit diff | latency b1 (ms) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.precision} | {r.variant} | {_fmt(r.accuracy, '{:.4f}')} | "
            f"{_fmt(r.agreement, '{:.2%}')} | {_fmt(r.max_logit_diff, '{:.3g}')} | {_fmt(r.latency_ms, '{:.2f}')} |"
            + (f" {r.error}" if r.error else "")
        )
    return "\n".join(lines)
