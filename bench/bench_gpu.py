"""GPU latency: PyTorch CUDA eager FP32 and FP16 against TensorRT FP16 and INT8 engines.

Builds a bundle from a one-epoch CUDA run on synthetic boards (latency does
not depend on how well the weights are trained), then times each runtime at
batch 1 and 8 in this one process. Every row includes the host-to-device copy
of the uint8 batch and the copy of logits and cams back, as the agent pays
them. TensorRT rows appear only where ``tensorrt`` imports; the JSON says why
when they are missing.

    python bench/bench_gpu.py --json OUT/gpu.json [--size 224] [--work DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deploy.bench import BenchRow, format_bench, write_bench_json
from deploy.export import EdgeModel, export_bundle
from deploy.timing import measure
from edge_inspector.backends.base import BackendOptions
from edge_inspector.bundle import Precision, load_bundle
from edge_inspector.errors import BackendError
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.config import TrainConfig
from trainer.fit import fit
from trainer.synth import generate_dataset

BATCHES = (1, 8)


def _torch_runner(run: Path, half: bool) -> Callable[[np.ndarray], object]:
    net, spec = model_from_checkpoint(load_checkpoint(run / "best.pt"))
    model = EdgeModel(net, spec).eval().cuda()

    def infer(images: np.ndarray) -> object:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=half):
            logits, cam = model(torch.from_numpy(images).cuda(non_blocking=True))
        return logits.float().cpu(), cam.float().cpu()  # .cpu() waits for the GPU

    return infer


def _tensorrt_runners(bundle_dir: Path, data: Path) -> tuple[list[tuple[str, object]], str]:
    """TensorRT backends for fp16 and int8 (engines built here), or why there are none."""
    try:
        import tensorrt
    except ImportError:
        return [], "tensorrt is not importable on this machine: TensorRT rows left out"
    from deploy.engine_build import build_engine
    from deploy.quantize import quantize_bundle
    from edge_inspector.backends.tensorrt import TensorRTBackend

    quantize_bundle(bundle_dir, data, samples=56)
    bundle = load_bundle(bundle_dir)
    runners = []
    for precision in (Precision.FP16, Precision.INT8):
        try:
            build_engine(bundle, precision, max_batch=max(BATCHES))
            runners.append((f"tensorrt {precision.value}", TensorRTBackend(bundle, precision, BackendOptions())))
        except BackendError as exc:
            logging.warning("tensorrt %s: %s", precision.value, exc)
    return runners, f"tensorrt {tensorrt.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--work", type=Path, help="keep the data, run and bundle here")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: PyTorch sees no CUDA device")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data, run, bundle = work / "data", work / "run", work / "bundle"
        generate_dataset(data, per_class=8, size=args.size, seed=0, view=0.3)
        fit(TrainConfig(data=data, out=run, image_size=args.size, weights="none", epochs=1, batch_size=8, cam_images=0))
        export_bundle(run, bundle, name="bench", version="bench")
        rng = np.random.default_rng(0)
        inputs = {b: rng.integers(0, 256, (b, args.size, args.size, 3), dtype=np.uint8) for b in BATCHES}

        runners: list[tuple[str, Callable[[np.ndarray], object]]] = [
            ("pytorch cuda eager fp32", _torch_runner(run, half=False)),
            ("pytorch cuda eager fp16 (autocast)", _torch_runner(run, half=True)),
        ]
        backends, tensorrt_note = _tensorrt_runners(bundle, data)
        runners += [(name, backend.infer) for name, backend in backends]
        rows: list[BenchRow] = []
        baseline: dict[int, float] = {}
        for name, infer in runners:
            for batch in BATCHES:
                timing = measure(lambda f=infer, b=batch: f(inputs[b]), batch=batch, runs=args.runs, budget_s=20.0)
                baseline.setdefault(batch, timing.median_ms)
                speedup = baseline[batch] / timing.median_ms
                rows.append(BenchRow(name, batch, timing.median_ms, timing.p90_ms, timing.images_per_second, speedup))
        for _, backend in backends:
            backend.close()
    print(format_bench(rows).replace("vs PyTorch eager", "vs PyTorch CUDA fp32"))
    print(tensorrt_note)
    write_bench_json(
        args.json,
        rows,
        image_size=args.size,
        gpu=torch.cuda.get_device_name(0),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        tensorrt=tensorrt_note,
        baseline="pytorch cuda eager fp32, same batch",
    )


if __name__ == "__main__":
    main()
