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

from deploy.bench import bench_bundle, cpu_flags, format_bench, make_bench_bundle, write_bench_json


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
        bundle = make_bench_bundle(args.work or Path(tmp), args.size)
        rows = bench_bundle(bundle, batches=(1, 8), threads=args.threads, runs=args.runs)
        print(format_bench(rows))
        print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}")
        write_bench_json(args.json, rows, image_size=args.size, threads=args.threads)


if __name__ == "__main__":
    main()
