"""A finer activation map: CAM stride 16 (layer4 dilated) against ResNet50's 32, pointing gain against speed cost.

Trains one model per stride with the same recipe on the same synthetic
boards, reads each run's pointing score (share of defect images whose
activation peak lies in the defect box) and accuracy, then exports and
quantizes both and times them in turn, in short alternating windows (a
shared machine drifts), with the agent's runtime.

    .venv/bin/python bench/bench_cam_stride.py [--work DIR] [--size 96] [--epochs 8] [--per-class 60]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from deploy.bench import cpu_flags
from deploy.export import export_bundle
from deploy.quantize import quantize_bundle
from edge_inspector.backends import BackendKind, BackendOptions, backend_class
from edge_inspector.bundle import Precision, load_bundle
from trainer.config import TrainConfig
from trainer.fit import fit
from trainer.synth import generate_dataset

STRIDES = (32, 16)


def _rate(infer, batch: np.ndarray, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        infer(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep data, runs and bundles here (default: a temporary folder)")
    parser.add_argument("--size", type=int, default=96, help="image and model input size (default: 96)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per model (default: 8)")
    parser.add_argument("--per-class", type=int, default=60, help="synthetic images per class (default: 60)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads when timing (default: 2)")
    parser.add_argument("--backend", default="openvino", help="runtime to time, INT8 (default: openvino)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating timing windows per model (default: 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        data = work / "data"
        if not data.is_dir():
            generate_dataset(data, per_class=args.per_class, size=args.size, seed=3, view=0.3)
        results: dict[int, dict] = {}
        for stride in STRIDES:
            run, bundle = work / f"run-{stride}", work / f"bundle-{stride}"
            if not (bundle / "manifest.json").is_file():
                started = time.perf_counter()
                fit(
                    TrainConfig(
                        data=data,
                        out=run,
                        image_size=args.size,
                        weights="none",
                        epochs=args.epochs,
                        batch_size=16,
                        lr=1e-3,
                        patience=args.epochs,
                        seed=0,
                        cam_stride=stride,
                        cam_images=0,
                    )
                )
                (run / "train_seconds").write_text(f"{time.perf_counter() - started:.1f}\n")
                export_bundle(run, bundle, name=f"cam{stride}", version="bench")
                quantize_bundle(bundle, data, samples=140)
            metrics = json.loads((run / "metrics.json").read_text())
            results[stride] = {
                "accuracy": metrics["accuracy"],
                "pointing": metrics["pointing"]["score"],
                "pointing_images": metrics["pointing"]["images"],
                "cam_size": metrics["pointing"]["cam_size"],
                "train_seconds": float((run / "train_seconds").read_text()),
            }
        backends = {
            stride: backend_class(BackendKind(args.backend))(
                load_bundle(work / f"bundle-{stride}"), Precision.INT8, BackendOptions(threads=args.threads)
            )
            for stride in STRIDES
        }
        batch = np.random.default_rng(0).integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8)
        rates: dict[int, list[float]] = {stride: [] for stride in STRIDES}
        for _ in range(args.rounds):
            for stride, backend in backends.items():
                backend.infer(batch)
                rates[stride].append(_rate(backend.infer, batch, 1.0))
        ratios = [rates[32][i] / rates[16][i] for i in range(args.rounds)]
        for backend in backends.values():
            backend.close()

    print(f"\n{args.size} px, {args.epochs} epochs from scratch, {args.per_class} per class, {args.backend} INT8")
    print("| CAM stride | map | accuracy | pointing | images/s (batch 1) | train s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for stride, r in results.items():
        h, w = r["cam_size"]
        print(
            f"| {stride} | {h}x{w} | {r['accuracy']:.3f} | {r['pointing']:.3f} of {r['pointing_images']} | "
            f"{np.median(rates[stride]):.1f} | {r['train_seconds']:.0f} |"
        )
    print(f"\nstride 16 costs {np.median(ratios) - 1:+.1%} inference time per image (median of {args.rounds} pairs)")
    print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}")


if __name__ == "__main__":
    main()
