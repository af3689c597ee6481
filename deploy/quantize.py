"""INT8 (explicit Q/DQ, two flavours from one calibration) and FP16 variants.

- ``model.int8.u8s8.onnx``: uint8 activations, int8 per-channel weights. x86
  CPUs multiply u8 by s8 in VNNI; ONNX Runtime and OpenVINO run it fast.
- ``model.int8.s8s8.onnx``: symmetric int8 activations, the only form
  TensorRT accepts (a strongly typed network built from Q/DQ nodes).
- ``model.fp16.onnx``: fp16 weights and arithmetic, fp32/uint8 at the edges.

Calibration ranges are computed once from the calibration images and cached;
both INT8 flavours are quantized from the same ranges. Each variant is then
scored against FP32 on validation images and the figures go in the manifest.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization import CalibrationMethod as OrtMethod

from deploy.export import FP32_FILE, load_images, onnx_session
from deploy.onnx_rewrites import float_inputs_outside_weighted_layers, float_parts_to_fp16, prepare, to_fp16
from deploy.qdq_placement import WEIGHTED_OPS, float_regions
from edge_inspector.bundle import IMAGE, LOGITS, Bundle, Precision, Variant, load_bundle, write_manifest
from edge_inspector.errors import BundleError
from trainer.data import Sample, scan_folder
from trainer.errors import CheckpointError, DatasetError
from trainer.evaluation import folder_samples, split_samples

__all__ = [
    "MIN_ONNXRUNTIME",
    "CalibrationMethod",
    "VariantScore",
    "quantize_bundle",
    "require_onnxruntime",
    "score_variant",
]

log = logging.getLogger(__name__)

FP16_FILE = "model.fp16.onnx"
INT8_FILES = {"uint8": "model.int8.u8s8.onnx", "int8": "model.int8.s8s8.onnx"}
MIN_PER_CLASS = 10


class CalibrationMethod(str, Enum):
    """How activation ranges are chosen from calibration images."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclass(frozen=True)
class VariantScore:
    """A variant against FP32 on the same images."""

    accuracy: float
    fp32_accuracy: float
    top1_agreement: float
    max_logit_diff: float

    @property
    def accuracy_delta(self) -> float:
        """Accuracy change in absolute terms (negative = worse than FP32)."""
        return self.accuracy - self.fp32_accuracy


def _calibration_samples(root: Path, classes: list[str], limit: int, seed: int) -> list[Sample]:
    """Up to ``limit`` images spread evenly over the classes (train/ first when split)."""
    folder = root / "train" if (root / "train").is_dir() and (root / "val").is_dir() else root
    try:
        _, samples = scan_folder(folder, classes, allow_missing=True)
    except DatasetError as exc:
        raise BundleError(f"calibration folder unusable: {exc}") from exc
    if not samples:
        raise BundleError(f"{folder}: no readable calibration images of the classes {classes}")
    rng = np.random.default_rng(seed)
    by_class = [[s for s in samples if s.label == label] for label in range(len(classes))]
    per_class = max(1, limit // len(classes))
    picked = []
    for label, members in enumerate(by_class):
        order = rng.permutation(len(members))[:per_class]
        picked.extend(members[i] for i in order)
        if len(order) < MIN_PER_CLASS:
            log.warning(
                "only %d calibration image(s) of class '%s'; %d or more per class give steadier INT8 ranges",
                len(order),
                classes[label],
                MIN_PER_CLASS,
            )
    return picked


class _Reader(CalibrationDataReader):
    """Feeds calibration images to ONNX Runtime one at a time."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self._iter: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for image in self.images:
            yield {IMAGE: image[None]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._batches()


# the first onnxruntime with every argument passed to quantize_static (calibration_cache_path)
MIN_ONNXRUNTIME = "1.27"


def require_onnxruntime(version: str = ort.__version__) -> None:
    """Refuse an onnxruntime older than :data:`MIN_ONNXRUNTIME`, saying what to install."""
    have = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    need = tuple(int(p) for p in MIN_ONNXRUNTIME.split("."))
    if have < need:
        raise BundleError(
            f"quantizing needs onnxruntime >= {MIN_ONNXRUNTIME}, this is {version}: "
            f"pip install 'onnxruntime>={MIN_ONNXRUNTIME}'"
        )


def _quantize(
    source: Path, target: Path, images: np.ndarray, activations: str, method: CalibrationMethod, cache: Path
) -> None:
    """Q/DQ-quantize ``source`` (nodes named) with calibration ranges shared through ``cache``.

    ``uint8`` (U8S8, CPUs): every op ONNX Runtime runs in int8, int32 biases.
    ``int8`` (S8S8, TensorRT): Q/DQ on the inputs of weighted layers only,
    float biases, zero points 0, then the float parts in fp16. Either way the
    prologue, the attention gates and the head stay float
    (:mod:`deploy.qdq_placement`).
    """
    ort_method = {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[method]
    tensorrt = activations == "int8"
    extra: dict[str, Any] = {"ActivationSymmetric": tensorrt, "WeightSymmetric": True}
    if tensorrt:
        extra |= {
            "QuantizeBias": False,  # TensorRT dequantizes int8 only, never int32 biases
            "QDQDisableWeightAdjustForInt32Bias": True,
            "OpTypesToExcludeOutputQuantization": sorted(WEIGHTED_OPS),
        }
    quantize_static(
        str(source),
        str(target),
        _Reader(images),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=sorted(WEIGHTED_OPS) if tensorrt else None,
        per_channel=True,
        activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=ort_method,
        calibration_cache_path=str(cache),
        nodes_to_exclude=sorted(float_regions(onnx.load(str(source))).all),
        extra_options=extra,
    )
    if tensorrt:
        model = onnx.load(str(target))
        float_inputs_outside_weighted_layers(model)
        float_parts_to_fp16(model, target)


def _predict(path: Path, images: np.ndarray, batch: int = 16, *, optimize: bool = True) -> np.ndarray:
    session = onnx_session(path, optimize=optimize)
    return np.concatenate(
        [session.run([LOGITS], {IMAGE: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    ).astype(np.float32)


def score_variant(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> VariantScore:
    """Compare a variant's logits with FP32's on the same labelled images."""
    return VariantScore(
        accuracy=float((candidate.argmax(1) == labels).mean()),
        fp32_accuracy=float((reference.argmax(1) == labels).mean()),
        top1_agreement=float((candidate.argmax(1) == reference.argmax(1)).mean()),
        max_logit_diff=float(np.abs(candidate - reference).max()),
    )


def _validation_images(bundle: Bundle, data: Path | None, calibration: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Labelled images to score variants on: ``data``, else the run's split, else calibration."""
    classes = bundle.manifest.classes
    run = Path(bundle.manifest.training.run) if bundle.manifest.training else None
    try:
        if data is not None:
            samples, source = folder_samples(data, classes), str(data)
        elif run is not None:
            samples, source = split_samples(run), f"the validation split of {run}"
        else:
            raise CheckpointError("the bundle names no training run")
    except CheckpointError as exc:
        if data is not None:
            raise BundleError(str(exc)) from exc
        log.warning("%s; scoring the variants on the calibration images instead", exc)
        samples, source = folder_samples(calibration, classes), str(calibration)
    images, labels = load_images(samples, bundle.manifest.input)
    return images, labels, source


def quantize_bundle(
    bundle_dir: Path,
    calibration: Path,
    *,
    samples: int = 256,
    method: CalibrationMethod = CalibrationMethod.MINMAX,
    data: Path | None = None,
    tolerance: float = 0.01,
    seed: int = 0,
) -> tuple[Bundle, dict[str, VariantScore]]:
    """Add FP16 and both INT8 variants to a bundle, scored against FP32.

    Args:
        bundle_dir: a bundle written by ``export_bundle``.
        calibration: image folder in the calibration layout.
        samples: calibration images to draw, spread over the classes.
        method: activation range method.
        data: images to score on (default: the run's validation split).
        tolerance: accuracy loss (absolute) above which INT8 is reported with a warning.
        seed: which calibration images are drawn.

    Returns:
        The updated bundle and each new variant's score.

    Raises:
        BundleError: the bundle or calibration folder cannot be used.
    """
    require_onnxruntime()
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    spec = manifest.input
    calib_samples = _calibration_samples(calibration, manifest.classes, samples, seed)
    calib_images, _ = load_images(calib_samples, spec)
    log.info("calibrating on %d images from %s (%s)", len(calib_images), calibration, method.value)
    val_images, val_labels, source = _validation_images(bundle, data, calibration)
    reference = _predict(bundle.path(FP32_FILE), val_images)

    variants = dict(manifest.variants)
    scores: dict[str, VariantScore] = {}
    calibration_info: dict[str, Any] = {"method": method.value, "images": len(calib_images), "source": str(calibration)}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "calibration.cache"
        prepared = Path(tmp) / "prepared.onnx"
        prepare(bundle.path(FP32_FILE), prepared)
        for activations, file in INT8_FILES.items():
            _quantize(prepared, bundle.path(file), calib_images, activations, method, cache)
            name = f"int8-{'u8s8' if activations == 'uint8' else 's8s8'}"
            # the TensorRT flavour (fp16 Q/DQ) as written: ONNX Runtime's optimiser miscomputes it
            predicted = _predict(bundle.path(file), val_images, optimize=activations == "uint8")
            scores[name] = score_variant(reference, predicted, val_labels)
            variants[name] = _variant(file, Precision.INT8, activations, scores[name], calibration_info)
    to_fp16(bundle.path(FP32_FILE), bundle.path(FP16_FILE))
    scores["fp16"] = score_variant(reference, _predict(bundle.path(FP16_FILE), val_images), val_labels)
    variants["fp16"] = _variant(FP16_FILE, Precision.FP16, "float", scores["fp16"], None)

    for name, score in scores.items():
        log.info(
            "%s on %d images of %s: accuracy %.4f (fp32 %.4f, %+.4f), top-1 agreement %.2f%%",
            name,
            len(val_labels),
            source,
            score.accuracy,
            score.fp32_accuracy,
            score.accuracy_delta,
            100 * score.top1_agreement,
        )
        if score.accuracy_delta < -tolerance:
            log.warning(
                "%s loses %.1f accuracy points against fp32 (tolerance %.1f)",
                name,
                -100 * score.accuracy_delta,
                100 * tolerance,
            )
    write_manifest(bundle.root, manifest.model_copy(update={"variants": variants}))
    return load_bundle(bundle.root), scores


def _variant(
    file: str, precision: Precision, activations: str, score: VariantScore, calibration: dict[str, Any] | None
) -> Variant:
    return Variant(
        file=file,
        precision=precision,
        activations=activations,  # type: ignore[arg-type]
        accuracy=score.accuracy,
        accuracy_delta=score.accuracy_delta,
        top1_agreement=score.top1_agreement,
        max_logit_diff=score.max_logit_diff,
        calibration=calibration,
    )
