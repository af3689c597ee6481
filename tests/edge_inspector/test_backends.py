"""One conformance test over every backend present: same inputs, same outputs within tolerance."""

from pathlib import Path

import numpy as np
import pytest

from edge_inspector.backends import BackendKind, BackendOptions, available_backends, backend_class, create_backend
from edge_inspector.backends.onnxruntime import OnnxRuntimeBackend
from edge_inspector.bundle import Precision, load_bundle
from edge_inspector.errors import BackendError, BundleError

# Largest |logit - fp32 logit| relative to the fp32 logit range, and the least top-1 agreement. INT8 is held to
# the logit bound alone: on six noise images a two-epoch model's top two logits are often closer than INT8's
# error, so its top-1 agreement there measures the model, not the runtime (verify scores it on real images).
TOLERANCE = {Precision.FP32: (1e-3, 1.0), Precision.FP16: (2e-2, 1.0), Precision.INT8: (0.25, None)}
CPU_BACKENDS = [k for k in (BackendKind.ONNXRUNTIME, BackendKind.OPENVINO) if backend_class(k).available()]


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(tiny_bundle: Path, batch: np.ndarray):
    with OnnxRuntimeBackend(load_bundle(tiny_bundle), Precision.FP32, BackendOptions(device="cpu")) as backend:
        return backend.infer(batch)


@pytest.mark.parametrize("precision", list(TOLERANCE))
@pytest.mark.parametrize("kind", CPU_BACKENDS)
def test_backend_conformance(tiny_bundle: Path, batch, reference, kind: BackendKind, precision: Precision) -> None:
    with backend_class(kind)(load_bundle(tiny_bundle), precision, BackendOptions(device="cpu", threads=2)) as backend:
        out = backend.infer(batch)
        single = backend.infer(batch[:1])
        info = backend.describe()
    assert out.logits.shape == reference.logits.shape and out.logits.dtype == np.float32
    assert out.activation.shape == reference.activation.shape and out.activation.dtype == np.float32
    span = float(reference.logits.max() - reference.logits.min())
    max_rel, min_agreement = TOLERANCE[precision]
    assert np.abs(out.logits - reference.logits).max() <= max_rel * span
    if min_agreement is not None:
        assert (out.logits.argmax(1) == reference.logits.argmax(1)).mean() >= min_agreement
    assert np.allclose(single.logits, out.logits[:1], rtol=1e-3, atol=1e-3 * span)
    # the cam mean is the logit minus the head bias, whatever the runtime
    bias = reference.logits - reference.activation.mean(axis=(2, 3))
    assert np.abs(out.activation.mean(axis=(2, 3)) + bias - out.logits).max() <= max(max_rel, 1e-3) * span
    assert info["backend"] == kind.value and info["precision"] == precision.value
    if precision is Precision.INT8:
        assert info["variant"] == "int8-u8s8"  # CPUs get uint8 activations


def test_onnxruntime_and_openvino_are_here() -> None:
    assert {BackendKind.ONNXRUNTIME, BackendKind.OPENVINO} <= set(available_backends())


def test_auto_picks_a_backend_and_bad_input_is_refused(tiny_bundle: Path) -> None:
    with create_backend(load_bundle(tiny_bundle), BackendKind.AUTO, Precision.INT8, BackendOptions(device="cpu")) as b:
        # TensorRT first, but this bundle has no engine for it: the next runtime installed here
        assert b.kind is next(k for k in available_backends() if k is not BackendKind.TENSORRT)
        with pytest.raises(BackendError, match="expected uint8"):
            b.infer(np.zeros((1, 64, 64, 3), np.float32))
        with pytest.raises(BackendError, match="expected uint8"):
            b.infer(np.zeros((1, 32, 32, 3), np.uint8))


def test_missing_variant_is_a_clear_error(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from edge_inspector.bundle import write_manifest

    copy = tmp_path / "fp32-only"
    shutil.copytree(tiny_bundle, copy)
    manifest = load_bundle(copy).manifest
    write_manifest(copy, manifest.model_copy(update={"variants": {"fp32": manifest.variants["fp32"]}}))
    with pytest.raises(BundleError, match="no int8 variant"):
        OnnxRuntimeBackend(load_bundle(copy), Precision.INT8, BackendOptions(device="cpu"))
