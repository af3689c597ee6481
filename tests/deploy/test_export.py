"""Export: the ONNX contract, parity with PyTorch, the manifest, tamper detection."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploy.cli import main as deploy_main
from deploy.export import OPSET, export_bundle, onnx_session
from edge_inspector.bundle import MANIFEST, Precision, load_bundle
from edge_inspector.errors import BundleError


def test_onnx_contract(bundle_dir: Path) -> None:
    model = onnx.load(str(bundle_dir / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    (image,) = model.graph.input
    assert image.name == "image"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [64, 64, 3]
    assert [o.name for o in model.graph.output] == ["logits", "cam"]

    session = onnx_session(bundle_dir / "model.onnx")
    for n in (1, 5):
        batch = np.random.default_rng(n).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        logits, cam = session.run(None, {"image": batch})
        assert logits.shape == (n, 7) and logits.dtype == np.float32
        assert cam.shape == (n, 7, 4, 4)  # 64 px at the default CAM stride, 16


def test_manifest_describes_the_model(bundle_dir: Path, trained_run: Path) -> None:
    manifest = load_bundle(bundle_dir).manifest
    assert manifest.model_name == "tiny" and manifest.model_version == "1.0.0"
    assert manifest.ok_class == "ok" and len(manifest.classes) == 7
    assert manifest.input.size == 64 and manifest.input.resize == 73
    assert manifest.heatmap.stride == 32
    fp32 = manifest.variants["fp32"]
    assert fp32.precision is Precision.FP32 and fp32.top1_agreement == 1.0
    assert fp32.max_logit_diff is not None and fp32.max_logit_diff < 1e-2
    assert manifest.training is not None and manifest.training.run == str(trained_run.resolve())
    assert len(manifest.training.dataset_fingerprint) == 64
    assert set(manifest.files) == {v.file for v in manifest.variants.values()}


@pytest.mark.parametrize("name", ["model.onnx", "model.fp16.onnx", "model.int8.u8s8.onnx", "model.int8.s8s8.onnx"])
def test_one_flipped_byte_is_refused_naming_the_file(bundle_dir: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{name}: sha256 mismatch"):
        load_bundle(copy)


def test_missing_file_and_bad_manifest(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "model.fp16.onnx").unlink()
    with pytest.raises(BundleError, match="model.fp16.onnx: listed in the manifest but missing"):
        load_bundle(copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["threshold"] = 7
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="invalid manifest.*threshold"):
        load_bundle(copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="invalid manifest"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="bundle directory not found"):
        load_bundle(tmp_path / "nowhere")


def test_manifest_refuses_an_ok_class_that_is_not_a_class(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["ok_class"] = "good"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"invalid manifest.*ok_class 'good' is not one of the classes"):
        load_bundle(copy)


def test_export_refuses_to_overwrite_a_non_bundle(trained_run: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a bundle"):
        export_bundle(trained_run, precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_export_cli_prints_parity(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_main(["export", "--run", str(trained_run), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement 100.0%" in out and "largest logit difference" in out
    assert deploy_main(["export", "--run", str(tmp_path / "no-run"), "--out", str(tmp_path / "c")]) == 2
    assert "best.pt: checkpoint not found" in capsys.readouterr().err


def test_a_stride_32_run_exports_plain_resnet50s_coarser_map(synth_data: Path, tmp_path: Path) -> None:
    from deploy.tensorrt_check import check_model
    from trainer.config import TrainConfig
    from trainer.fit import fit

    run = tmp_path / "coarse"
    fit(TrainConfig(data=synth_data, out=run, image_size=64, weights="none", epochs=1, batch_size=8, cam_stride=32))
    bundle = tmp_path / "bundle"
    export_bundle(run, bundle, name="coarse", version="1")
    session = onnx_session(bundle / "model.onnx")
    logits, cam = session.run(["logits", "cam"], {"image": np.zeros((2, 64, 64, 3), np.uint8)})
    assert logits.shape == (2, 7) and cam.shape == (2, 7, 2, 2)  # 64 px / 32
    assert check_model(onnx.load(bundle / "model.onnx")) == []
