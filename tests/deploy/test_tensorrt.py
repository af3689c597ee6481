"""TensorRT engine build and backend, against ONNX Runtime as the reference.

Needs an NVIDIA GPU with TensorRT and pycuda: every test carries the ``gpu``
marker and the module skips where either package is missing. Nothing is
mocked. Tolerances (relative to the reference's logit or cam range):

- fp16 engine vs ONNX Runtime fp32: max abs diff <= 5e-2 of the range; top-1
  equal wherever the reference's top-2 margin exceeds that tolerance.
- int8 engine vs ONNX Runtime on the same S8S8 Q/DQ model, five synthetic
  PCB images (one per class, so top-1 margins are meaningful): top-1
  agreement >= 0.8 and max abs logit diff <= 0.15 of the range (kernels and
  fusions differ, scales are the same).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorrt")
pytest.importorskip("pycuda.driver")

from deploy.engine_build import build_engine  # noqa: E402
from edge_inspector.backends.base import BackendOptions  # noqa: E402
from edge_inspector.backends.tensorrt import (  # noqa: E402
    EngineInfo,
    TensorRTBackend,
    cuda_device,
    engine_path,
    gpu_slug,
    read_engine_info,
    source_variant,
)
from edge_inspector.bundle import Precision, load_bundle  # noqa: E402
from edge_inspector.errors import EngineMismatchError  # noqa: E402

MAX_BATCH = 4
FP16_TOL = 5e-2
INT8_TOL = 0.15
INT8_AGREEMENT = 0.8


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _pcb_images(root: Path, size: int, count: int = 5) -> np.ndarray:
    import cv2

    from edge_inspector.preprocess import InputSpec, resize_and_crop

    paths = [sorted(d.glob("*.png"))[0] for d in sorted(p for p in root.iterdir() if p.is_dir())][:count]
    spec = InputSpec.for_size(size)
    return np.stack([resize_and_crop(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), spec) for p in paths])


def _range(values: np.ndarray) -> float:
    return max(float(values.max() - values.min()), 1e-6)


@pytest.fixture(scope="module")
def engine_bundle(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the suite's bundle with fp16 and int8 engines built for this GPU."""
    if not TensorRTBackend.available():
        pytest.skip("no CUDA device")
    root = tmp_path_factory.mktemp("trt") / "bundle"
    shutil.copytree(bundle_dir, root)
    bundle = load_bundle(root)
    for precision in (Precision.FP16, Precision.INT8):
        build_engine(bundle, precision, max_batch=MAX_BATCH)
    return root


def _reference_fp32(root: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from edge_inspector.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(load_bundle(root), Precision.FP32, BackendOptions(device="cpu")) as backend:
        out = backend.infer(images)
    return out.logits, out.cam


def _reference_s8s8(root: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    bundle = load_bundle(root)
    name = source_variant(bundle.manifest, Precision.INT8).file
    session = ort.InferenceSession(str(bundle.path(name)), providers=["CPUExecutionProvider"])
    logits, _ = session.run(["logits", "cam"], {"image": images})
    return logits


@pytest.mark.gpu
def test_build_writes_engine_and_info(engine_bundle: Path) -> None:
    bundle = load_bundle(engine_bundle)
    gpu_name, cc = cuda_device(0)
    import tensorrt

    for precision in (Precision.FP16, Precision.INT8):
        path = engine_path(engine_bundle, precision, gpu_slug(gpu_name, cc))
        assert path.is_file() and path.stat().st_size > 0
        info = read_engine_info(path.with_suffix(".json"))
        source = source_variant(bundle.manifest, precision).file
        assert info.precision is precision
        assert info.engine_file == path.name
        assert info.source_onnx == source and info.source_sha256 == bundle.sha256(source)
        assert (info.gpu_name, info.compute_capability) == (gpu_name, cc)
        assert info.tensorrt_version == tensorrt.__version__
        assert info.max_batch == MAX_BATCH and info.input_size == bundle.manifest.input.size
    assert source_variant(bundle.manifest, Precision.INT8).activations == "int8"
    assert (engine_bundle / "engines" / "timing.cache").is_file()


@pytest.mark.gpu
def test_rebuild_returns_info_matching_json(engine_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(engine_bundle, root)
    info = build_engine(load_bundle(root), Precision.FP16, max_batch=MAX_BATCH)  # reuses the timing cache
    path = root / "engines" / info.engine_file
    assert EngineInfo.model_validate_json(path.with_suffix(".json").read_text()) == info


@pytest.mark.gpu
def test_fp16_matches_onnxruntime_fp32(engine_bundle: Path) -> None:
    bundle = load_bundle(engine_bundle)
    images = _images(5, bundle.manifest.input.size)
    ref_logits, ref_cam = _reference_fp32(engine_bundle, images)
    with TensorRTBackend(bundle, Precision.FP16, BackendOptions()) as backend:
        out = backend.infer(images)

    assert out.logits.dtype == np.float32 and out.cam.dtype == np.float32
    assert out.logits.shape == ref_logits.shape == (5, len(bundle.manifest.classes))
    assert out.cam.shape == ref_cam.shape
    tol = FP16_TOL * _range(ref_logits)
    assert np.abs(out.logits - ref_logits).max() <= tol
    assert np.abs(out.cam - ref_cam).max() <= FP16_TOL * _range(ref_cam)
    top2 = np.sort(ref_logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > tol
    assert np.array_equal(out.logits.argmax(1)[clear], ref_logits.argmax(1)[clear])


@pytest.mark.gpu
def test_int8_matches_onnxruntime_s8s8(engine_bundle: Path, synth_data: Path) -> None:
    bundle = load_bundle(engine_bundle)
    images = _pcb_images(synth_data, bundle.manifest.input.size)
    assert len(images) == 5
    ref_logits = _reference_s8s8(engine_bundle, images)
    with TensorRTBackend(bundle, Precision.INT8, BackendOptions()) as backend:
        out = backend.infer(images)

    assert out.logits.shape == ref_logits.shape
    agreement = float(np.mean(out.logits.argmax(1) == ref_logits.argmax(1)))
    assert agreement >= INT8_AGREEMENT
    assert np.abs(out.logits - ref_logits).max() <= INT8_TOL * _range(ref_logits)


@pytest.mark.gpu
def test_batch_larger_than_max_batch_is_chunked(engine_bundle: Path) -> None:
    bundle = load_bundle(engine_bundle)
    images = _images(2 * MAX_BATCH + 3, bundle.manifest.input.size, seed=2)
    with TensorRTBackend(bundle, Precision.FP16, BackendOptions()) as backend:
        whole = backend.infer(images)
        singles = [backend.infer(images[i : i + 1]) for i in range(len(images))]
        empty = backend.infer(images[:0])
    assert whole.logits.shape[0] == whole.cam.shape[0] == len(images)
    singles_logits = np.concatenate([s.logits for s in singles])
    np.testing.assert_allclose(whole.logits, singles_logits, rtol=0, atol=2e-2 * _range(whole.logits))
    assert empty.logits.shape == (0, whole.logits.shape[1]) and empty.cam.shape[1:] == whole.cam.shape[1:]


@pytest.mark.gpu
def test_infer_from_worker_thread(engine_bundle: Path) -> None:
    bundle = load_bundle(engine_bundle)
    images = _images(3, bundle.manifest.input.size, seed=3)
    results: list[np.ndarray] = []
    with TensorRTBackend(bundle, Precision.FP16, BackendOptions()) as backend:
        here = backend.infer(images).logits
        worker = threading.Thread(target=lambda: results.append(backend.infer(images).logits))
        worker.start()
        worker.join(timeout=60)
    assert len(results) == 1
    np.testing.assert_allclose(results[0], here, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("compute_capability", "1.0"),
        ("tensorrt_version", "0.0.0"),
        ("gpu_name", "Another GPU"),
        ("source_sha256", "0" * 64),
    ],
)
def test_mismatched_engine_is_refused(engine_bundle: Path, tmp_path: Path, field: str, value: str) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(engine_bundle, root)
    path = engine_path(root, Precision.FP16, gpu_slug(*cuda_device(0))).with_suffix(".json")
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(EngineMismatchError, match="build-engine"):
        TensorRTBackend(load_bundle(root), Precision.FP16, BackendOptions())


@pytest.mark.gpu
def test_missing_engine_is_refused(bundle_dir: Path) -> None:
    if not TensorRTBackend.available():
        pytest.skip("no CUDA device")
    with pytest.raises(EngineMismatchError, match="build-engine --bundle"):
        TensorRTBackend(load_bundle(bundle_dir), Precision.FP16, BackendOptions())


@pytest.mark.gpu
def test_describe_and_close(engine_bundle: Path) -> None:
    import tensorrt

    bundle = load_bundle(engine_bundle)
    gpu_name, cc = cuda_device(0)
    backend = TensorRTBackend(bundle, Precision.INT8, BackendOptions())
    described = backend.describe()
    assert described["backend"] == "tensorrt"
    assert described["precision"] == "int8"
    assert gpu_name in described["device"] and cc in described["device"]
    assert described["file"] == source_variant(bundle.manifest, Precision.INT8).file
    assert described["engine"].endswith(f"model.int8.{gpu_slug(gpu_name, cc)}.engine")
    assert tensorrt.__version__ in described["runtime"]
    backend.close()
    backend.close()  # idempotent
