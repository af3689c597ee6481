"""Latency and throughput of a bundle in every runtime, against PyTorch eager FP32.

PyTorch eager FP32 is how a model is usually served straight from training;
every other row is a ratio against it, measured in the same process on the
same inputs with the same thread count.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deploy.timing import Timing, measure
from edge_inspector.backends import BackendKind, BackendOptions, available_backends, backend_class
from edge_inspector.bundle import Bundle, Precision, load_bundle
from edge_inspector.errors import BackendError
from trainer.errors import CheckpointError

__all__ = ["BenchRow", "bench_bundle", "cpu_flags", "format_bench", "make_bench_bundle", "write_bench_json"]

log = logging.getLogger(__name__)

_PLAN: tuple[tuple[BackendKind, Precision, str], ...] = (
    (BackendKind.ONNXRUNTIME, Precision.FP32, "cpu"),
    (BackendKind.ONNXRUNTIME, Precision.INT8, "cpu"),
    (BackendKind.ONNXRUNTIME, Precision.FP16, "cpu"),
    (BackendKind.OPENVINO, Precision.FP32, "cpu"),
    (BackendKind.OPENVINO, Precision.INT8, "cpu"),
    (BackendKind.TENSORRT, Precision.FP16, "cuda"),
    (BackendKind.TENSORRT, Precision.INT8, "cuda"),
)


@dataclass(frozen=True)
class BenchRow:
    """One runtime at one batch size."""

    name: str
    batch: int
    median_ms: float
    p90_ms: float
    images_per_second: float
    speedup: float | None


def _torch_runner(bundle: Bundle, threads: int) -> Callable[[np.ndarray], object] | None:
    run = bundle.manifest.training.run if bundle.manifest.training else None
    try:
        import torch

        from deploy.export import EdgeModel
        from trainer.checkpoint import load_checkpoint, model_from_checkpoint

        if run is None:
            raise CheckpointError("the bundle names no training run")
        net, spec = model_from_checkpoint(load_checkpoint(Path(run) / "best.pt"))
    except (ImportError, CheckpointError) as exc:
        log.warning("PyTorch eager baseline unavailable (%s): ratios are left out", exc)
        return None
    torch.set_num_threads(threads)
    model = EdgeModel(net, spec).eval()

    def infer(images: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(images))

    return infer


def make_bench_bundle(work: Path, size: int = 224) -> Path:
    """A quantized bundle from a one-epoch run on synthetic boards, built once under ``work``.

    Speed does not depend on how well the weights are trained, so a benchmark
    needs no better model than this.
    """
    from deploy.export import export_bundle
    from deploy.quantize import quantize_bundle
    from trainer.config import TrainConfig
    from trainer.fit import fit
    from trainer.synth import generate_dataset

    data, run, bundle = work / "data", work / "run", work / "bundle"
    if not (bundle / "manifest.json").is_file():
        generate_dataset(data, per_class=8, size=size, seed=0, view=0.3)
        fit(TrainConfig(data=data, out=run, image_size=size, weights="none", epochs=1, batch_size=8, cam_images=0))
        export_bundle(run, bundle, name="bench", version="bench")
        quantize_bundle(bundle, data, samples=56)
    return bundle


def bench_bundle(
    bundle_dir: Path, *, batches: Sequence[int] = (1, 8), threads: int = 2, runs: int = 30, budget_s: float = 15.0
) -> list[BenchRow]:
    """Time every runtime present at each batch size; PyTorch eager FP32 first."""
    bundle = load_bundle(bundle_dir)
    size = bundle.manifest.input.size
    rng = np.random.default_rng(0)
    inputs = {b: rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8) for b in batches}
    runners: list[tuple[str, Callable[[np.ndarray], object], Callable[[], None]]] = []
    torch_infer = _torch_runner(bundle, threads)
    if torch_infer is not None:
        runners.append(("pytorch eager fp32", torch_infer, lambda: None))
    present = set(available_backends())
    for kind, precision, device in _PLAN:
        if kind not in present or not any(v.precision is precision for v in bundle.manifest.variants.values()):
            continue
        try:
            backend = backend_class(kind)(bundle, precision, BackendOptions(threads=threads, device=device))
        except BackendError as exc:
            log.warning("skipping %s %s: %s", kind.value, precision.value, exc)
            continue
        label = f"{kind.value} {backend.describe().get('variant', precision.value)}"
        runners.append((label, backend.infer, backend.close))

    rows: list[BenchRow] = []
    baseline: dict[int, Timing] = {}
    for name, infer, close in runners:
        try:
            for batch in batches:
                timing = measure(lambda b=batch, f=infer: f(inputs[b]), batch=batch, runs=runs, budget_s=budget_s)
                if name.startswith("pytorch"):
                    baseline[batch] = timing
                speedup = baseline[batch].median_ms / timing.median_ms if batch in baseline else None
                rows.append(BenchRow(name, batch, timing.median_ms, timing.p90_ms, timing.images_per_second, speedup))
                log.info("%s batch %d: %.2f ms", name, batch, timing.median_ms)
        finally:
            close()
    return rows


def format_bench(rows: Sequence[BenchRow]) -> str:
    """Markdown table: one line per runtime and batch size."""
    lines = [
        "| runtime | batch | median ms | p90 ms | images/s | vs PyTorch eager |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = "-" if r.speedup is None else f"{r.speedup:.2f}x"
        lines.append(
            f"| {r.name} | {r.batch} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {r.images_per_second:.1f} | {ratio} |"
        )
    return "\n".join(lines)


_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16", "asimd")


def cpu_flags() -> list[str]:
    """The CPU features that decide INT8 and bf16 speed here (from /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    present = set(
        next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith(("flags", "Features"))), [])
    )
    return [f for f in _FLAGS if f in present]


def write_bench_json(path: Path, rows: Sequence[BenchRow], **context: object) -> None:
    """Write rows plus the machine and settings they were measured on."""
    payload = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_flags": cpu_flags(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        **context,
        "rows": [asdict(r) for r in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
