"""Benchmark every CPU runtime against PyTorch eager FP32 at 224 px.

Builds a 224 px bundle from a one-epoch run on synthetic boards (latency does
not depend on how well the weights are trained), quantizes it, then times
each runtime at batch 1 and 8 in this one process, 2 threads each.

    .venv/bin/python bench/bench_backends.py [--work DIR] [--json bench/results/backends-cpu.json]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from deploy.bench import bench_bundle, cpu_flags, format_bench, write_bench_json
from deploy.export import export_bundle
from deploy.quantize import quantize_bundle
from trainer.config import TrainConfig
from trainer.fit import fit
from trainer.synth import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the data, run and bundle here")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, default=Path("bench/results/backends-cpu.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data, run, bundle = work / "data", work / "run", work / "bundle"
        if not (bundle / "manifest.json").is_file():
            generate_dataset(data, per_class=8, size=args.size, seed=0, view=0.3)
            fit(
                TrainConfig(
                    data=data, out=run, image_size=args.size, weights="none", epochs=1, batch_size=8, cam_images=0
                )
            )
            export_bundle(run, bundle, name="bench", version="bench")
            quantize_bundle(bundle, data, samples=56)
        rows = bench_bundle(bundle, batches=(1, 8), threads=args.threads, runs=args.runs)
        print(format_bench(rows))
        print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}")
        write_bench_json(args.json, rows, image_size=args.size, threads=args.threads)


if __name__ == "__main__":
    main()
