"""TensorRT engine build and backend, against ONNX Runtime on the same ONNX variant.

Needs an NVIDIA GPU with TensorRT >= 10 and pycuda: every test carries the
``gpu`` marker, which skips it where either is missing. Nothing is mocked.
The model is trained on CUDA until its FP32 reference is informative (it
tells the test images apart and predicts several classes), so a wrong engine
cannot pass by matching a near-constant output.

Tolerances are relative to the range of the reference's logits (or activation maps):
- FP16 engine vs ONNX Runtime on ``model.fp16.onnx``: ``FP16_TOL``;
- INT8 engine vs ONNX Runtime on the S8S8 model (same scales, other kernels
  and fusions): ``INT8_TOL``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from deploy.engine_build import build_engine
from deploy.export import export_bundle, load_images
from deploy.quantize import quantize_bundle
from edge_inspector.backends.base import BackendOptions
from edge_inspector.backends.cuda_buffers import cuda_device
from edge_inspector.backends.tensorrt import TensorRTBackend
from edge_inspector.backends.tensorrt_engine import (
    EngineInfo,
    engine_path,
    gpu_slug,
    read_engine_info,
    source_variant,
)
from edge_inspector.bundle import Precision, load_bundle
from edge_inspector.errors import EngineMismatchError
from trainer.evaluation import split_samples

MAX_BATCH = 4
SIZE = 64
FP16_TOL = 2e-2
INT8_TOL = 8e-2
INFORMATIVE = 5  # reference logits of two images differ by at least this many tolerances (median pair)
TOLERANCE = {Precision.FP16: FP16_TOL, Precision.INT8: INT8_TOL}


@pytest.fixture(scope="module")
def engine_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on CUDA, exported, quantized, with fp16 and int8 engines for this GPU."""
    torch = pytest.importorskip("torch")
    if not (TensorRTBackend.available() and torch.cuda.is_available()):
        pytest.skip("no CUDA device")
    from trainer.config import TrainConfig
    from trainer.fit import fit
    from trainer.synth import generate_dataset

    work = tmp_path_factory.mktemp("trt")
    data, run, root = work / "data", work / "run", work / "bundle"
    generate_dataset(data, per_class=30, size=SIZE, seed=3, view=0.3)
    fit(
        TrainConfig(
            data=data, out=run, image_size=SIZE, weights="none", epochs=12, batch_size=32, device="cuda", cam_images=0
        )
    )
    export_bundle(run, root, name="trt", version="1.0.0")
    quantize_bundle(root, data, samples=70)
    bundle = load_bundle(root)
    for precision in (Precision.FP16, Precision.INT8):
        build_engine(bundle, precision, max_batch=MAX_BATCH)
    return root


@pytest.fixture(scope="module")
def images(engine_bundle: Path) -> np.ndarray:
    """The run's validation images as the box feeds them (uint8 NHWC), more than two engine batches."""
    bundle = load_bundle(engine_bundle)
    batch, _ = load_images(split_samples(Path(bundle.manifest.training.run)), bundle.manifest.input)
    assert len(batch) > 2 * MAX_BATCH
    return batch[: 4 * MAX_BATCH + 3]


def _onnxruntime(root: Path, precision: Precision, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    bundle = load_bundle(root)
    path = bundle.path(source_variant(bundle.manifest, precision).file)
    options = ort.SessionOptions()
    # as written: ONNX Runtime's CPU optimiser miscomputes Q/DQ with fp16 scales (see deploy.export.onnx_session)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": images})
    return logits, cam


def _range(values: np.ndarray) -> float:
    return max(float(values.max() - values.min()), 1e-6)


@pytest.mark.gpu
def test_reference_is_informative(engine_bundle: Path, images: np.ndarray) -> None:
    logits, _ = _onnxruntime(engine_bundle, Precision.FP32, images)
    assert len(set(logits.argmax(1).tolist())) >= 2
    pairs = [np.abs(logits[i] - logits[j]).max() for i, j in itertools.combinations(range(len(logits)), 2)]
    assert float(np.median(pairs)) >= INFORMATIVE * INT8_TOL * _range(logits)


@pytest.mark.gpu
def test_build_writes_engine_and_info(engine_bundle: Path) -> None:
    import tensorrt

    bundle = load_bundle(engine_bundle)
    gpu_name, cc = cuda_device(0)
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
    assert (engine_bundle / "engines" / "timing.cache").is_file()


@pytest.mark.gpu
def test_rebuild_returns_info_matching_json(engine_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(engine_bundle, root)
    info = build_engine(load_bundle(root), Precision.FP16, max_batch=MAX_BATCH)  # reuses the timing cache
    path = root / "engines" / info.engine_file
    assert EngineInfo.model_validate_json(path.with_suffix(".json").read_text()) == info


@pytest.mark.gpu
@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8])
def test_engine_matches_onnxruntime_image_by_image(
    engine_bundle: Path, images: np.ndarray, precision: Precision
) -> None:
    """Every image's logits and cam, chunked past the profile's max batch, equal ONNX Runtime's."""
    ref_logits, ref_cam = _onnxruntime(engine_bundle, precision, images)
    with TensorRTBackend(load_bundle(engine_bundle), precision, BackendOptions()) as backend:
        out = backend.infer(images)  # more than MAX_BATCH: chunked
    assert out.logits.dtype == np.float32 and out.activation.dtype == np.float32
    assert out.logits.shape == ref_logits.shape and out.activation.shape == ref_cam.shape
    tol, cam_tol = TOLERANCE[precision] * _range(ref_logits), TOLERANCE[precision] * _range(ref_cam)
    for i in range(len(images)):
        assert np.abs(out.logits[i] - ref_logits[i]).max() <= tol, f"image {i} logits"
        assert np.abs(out.activation[i] - ref_cam[i]).max() <= cam_tol, f"image {i} cam"
    top2 = np.sort(ref_logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
    assert clear.any()
    assert np.array_equal(out.logits.argmax(1)[clear], ref_logits.argmax(1)[clear])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8])
def test_reversed_batch_gives_reversed_outputs(engine_bundle: Path, images: np.ndarray, precision: Precision) -> None:
    batch = images[:MAX_BATCH]
    with TensorRTBackend(load_bundle(engine_bundle), precision, BackendOptions()) as backend:
        forward = backend.infer(batch)
        backward = backend.infer(batch[::-1].copy())
        empty = backend.infer(batch[:0])
    tol = 1e-3 * _range(forward.logits)
    np.testing.assert_allclose(backward.logits[::-1], forward.logits, rtol=0, atol=tol)
    np.testing.assert_allclose(
        backward.activation[::-1], forward.activation, rtol=0, atol=1e-3 * _range(forward.activation)
    )
    assert (
        empty.logits.shape == (0, forward.logits.shape[1])
        and empty.activation.shape[1:] == forward.activation.shape[1:]
    )


@pytest.mark.gpu
def test_infer_from_worker_thread(engine_bundle: Path, images: np.ndarray) -> None:
    results: list[np.ndarray] = []
    with TensorRTBackend(load_bundle(engine_bundle), Precision.FP16, BackendOptions()) as backend:
        here = backend.infer(images[:3]).logits
        worker = threading.Thread(target=lambda: results.append(backend.infer(images[:3]).logits))
        worker.start()
        worker.join(timeout=60)
    assert len(results) == 1
    np.testing.assert_allclose(results[0], here, atol=1e-3 * _range(here))


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
