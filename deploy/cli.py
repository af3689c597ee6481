"""``edge-deploy``: export a run to a bundle, quantize it, check and build engines, verify, benchmark."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_inspector.bundle import Precision
from edge_inspector.console import run_command

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks (default: off)")
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a run's best checkpoint to an FP32 ONNX bundle")
    e.add_argument("--run", type=Path, required=True, help="training run directory with best.pt (required)")
    e.add_argument("--out", type=Path, required=True, help="bundle directory to write (required)")
    e.add_argument("--name", help="model name (default: the run's folder name)")
    e.add_argument("--version", help="model version (default: UTC time of export)")

    q = sub.add_parser("quantize", help="add INT8 (U8S8 + S8S8) and FP16 variants, scored against FP32")
    q.add_argument("--bundle", type=Path, required=True, help="bundle directory made by export (required)")
    q.add_argument("--calibration", type=Path, required=True, help="image folder in the calibration layout (required)")
    q.add_argument(
        "--samples", type=int, default=256, help="calibration images, spread over the classes (default: 256)"
    )
    q.add_argument(
        "--method",
        choices=["minmax", "entropy", "percentile"],
        default="minmax",
        help="how activation ranges are calibrated (default: minmax)",
    )
    q.add_argument("--data", type=Path, help="images to score on (default: the run's validation split)")
    q.add_argument(
        "--tolerance", type=float, default=0.01, help="accuracy loss that triggers a warning (default: 0.01)"
    )

    b = sub.add_parser("build-engine", help="build a TensorRT engine for this GPU (run on the box)")
    b.add_argument("--bundle", type=Path, required=True, help="bundle directory (required)")
    b.add_argument("--precision", choices=["fp16", "int8"], default="fp16", help="engine precision (default: fp16)")
    b.add_argument("--max-batch", type=int, default=8, help="largest micro-batch the engine accepts (default: 8)")
    b.add_argument(
        "--workspace-mib", type=int, default=1024, help="GPU memory TensorRT may use while building (default: 1024)"
    )

    c = sub.add_parser("check-tensorrt", help="check the variants TensorRT builds from against its parser's rules")
    c.add_argument("--bundle", type=Path, required=True, help="bundle directory (required)")

    v = sub.add_parser("verify", help="check hashes and run every variant in every backend")
    v.add_argument("--bundle", type=Path, required=True, help="bundle directory (required)")
    v.add_argument("--data", type=Path, help="labelled images (default: the run's validation split)")
    v.add_argument("--threads", type=int, help="CPU inference threads (default: the runtime decides)")

    n = sub.add_parser("bench", help="latency and throughput against PyTorch eager FP32")
    n.add_argument("--bundle", type=Path, required=True, help="bundle directory (required)")
    n.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes to time (default: 1 8)")
    n.add_argument("--threads", type=int, default=2, help="CPU inference threads of every runtime (default: 2)")
    n.add_argument("--runs", type=int, default=30, help="timed calls per runtime and batch size (default: 30)")
    n.add_argument("--json", type=Path, help="also write the figures here (default: print only)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "export":
        from deploy.export import export_bundle

        bundle, parity = export_bundle(args.run, args.out, name=args.name, version=args.version)
        print(
            f"exported {bundle.manifest.model_name} {bundle.manifest.model_version} to {args.out}: ONNX top-1 "
            f"agreement {parity.top1_agreement:.1%} on {parity.images} images, largest logit difference "
            f"{parity.max_logit_diff:.2e}"
        )
    elif args.command == "quantize":
        from deploy.quantize import CalibrationMethod, quantize_bundle

        _, scores = quantize_bundle(
            args.bundle,
            args.calibration,
            samples=args.samples,
            method=CalibrationMethod(args.method),
            data=args.data,
            tolerance=args.tolerance,
        )
        for name, s in scores.items():
            print(
                f"{name}: accuracy {s.accuracy:.4f} ({s.accuracy_delta:+.4f} vs fp32), "
                f"top-1 agreement {s.top1_agreement:.2%}"
            )
    elif args.command == "build-engine":
        from deploy.engine_build import build_engine
        from edge_inspector.bundle import load_bundle

        info = build_engine(
            load_bundle(args.bundle),
            Precision(args.precision),
            max_batch=args.max_batch,
            workspace_mib=args.workspace_mib,
        )
        print(
            f"built {info.precision.value} engine for {info.gpu_name} (compute {info.compute_capability}), "
            f"TensorRT {info.tensorrt_version}"
        )
    elif args.command == "check-tensorrt":
        from deploy.tensorrt_check import check_bundle, format_violations
        from edge_inspector.bundle import load_bundle

        results = check_bundle(load_bundle(args.bundle))
        for file, violations in results.items():
            print(format_violations(file, violations))
        return 1 if any(results.values()) else 0
    elif args.command == "verify":
        from deploy.verify import format_table, verify_bundle

        rows = verify_bundle(args.bundle, data=args.data, threads=args.threads)
        print(format_table(rows))
        return 1 if any(r.error for r in rows) else 0
    else:
        from deploy.bench import bench_bundle, format_bench, write_bench_json

        rows = bench_bundle(args.bundle, batches=args.batch, threads=args.threads, runs=args.runs)
        print(format_bench(rows))
        if args.json:
            write_bench_json(args.json, rows, bundle=str(args.bundle), threads=args.threads)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-deploy``."""
    args = _parser().parse_args(argv)
    return run_command("edge-deploy", args, _run, level=logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
