"""verify and bench over the backends present (no timing assertions: figures live in bench/)."""

import json
import shutil
from pathlib import Path

import pytest

from deploy.bench import bench_bundle, format_bench
from deploy.cli import main as deploy_main
from deploy.verify import format_table, verify_bundle


def test_verify_scores_every_variant_in_every_cpu_backend(bundle_dir: Path) -> None:
    rows = verify_bundle(bundle_dir, threads=2)
    seen = {(r.backend, r.precision) for r in rows if r.error is None}
    for backend in ("onnxruntime", "openvino"):
        assert {(backend, p) for p in ("fp32", "fp16", "int8")} <= seen
    fp32 = next(r for r in rows if (r.backend, r.precision) == ("onnxruntime", "fp32"))
    assert fp32.agreement == 1.0 and fp32.max_logit_diff == 0.0
    for row in rows:
        assert row.accuracy is not None and 0.0 <= row.accuracy <= 1.0
        assert row.latency_ms is not None and row.latency_ms > 0
        if row.precision == "int8":  # scored against fp32, and really quantized (its logits differ)
            assert row.agreement is not None and 0.0 <= row.agreement <= 1.0 and row.max_logit_diff > 0.0
        else:
            assert row.agreement == 1.0
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| openvino | int8 | int8-u8s8 |" in table


def test_verify_cli_refuses_a_tampered_bundle(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    with (copy / "model.int8.s8s8.onnx").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert deploy_main(["verify", "--bundle", str(copy)]) == 2
    assert "model.int8.s8s8.onnx: sha256 mismatch" in capsys.readouterr().err


def test_bench_rows_have_ratios_against_pytorch(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    rows = bench_bundle(bundle_dir, batches=(1, 2), threads=2, runs=3, budget_s=2.0)
    names = {r.name for r in rows}
    assert {"pytorch eager fp32", "onnxruntime fp32", "onnxruntime int8-u8s8", "openvino int8-u8s8"} <= names
    torch_rows = [r for r in rows if r.name == "pytorch eager fp32"]
    assert [r.speedup for r in torch_rows] == [pytest.approx(1.0)] * 2
    assert all(r.speedup is not None and r.speedup > 0 and r.images_per_second > 0 for r in rows)
    assert format_bench(rows).count("\n") == len(rows) + 1

    out = tmp_path / "bench.json"
    code = deploy_main(["bench", "--bundle", str(bundle_dir), "--batch", "1", "--runs", "3", "--json", str(out)])
    assert code == 0 and "vs PyTorch eager" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["threads"] == 2 and {r["batch"] for r in payload["rows"]} == {1}
