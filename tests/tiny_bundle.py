"""A tiny model bundle built with ``onnx.helper``: the agent's tests need no torch and no training.

The graph keeps the bundle contract (``edge_inspector.bundle``): uint8 NHWC
``image`` in; ``cam`` from a 1x1 head on a stride-16 feature map, and
``logits`` its spatial mean plus a bias. Two strided convolutions stand in
for the ResNet. Variants as ``edge-deploy quantize`` names them: FP32, FP16
and INT8 with uint8 (U8S8) and int8 (S8S8) activations, calibrated on noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from deploy.onnx_rewrites import to_fp16
from edge_inspector.bundle import CAM, IMAGE, LOGITS, BundleManifest, HeatmapSpec, Precision, Variant, write_manifest
from edge_inspector.preprocess import InputSpec

__all__ = ["CLASSES", "write_tiny_bundle"]

CLASSES = ["missing_hole", "mouse_bite", "ok", "open_circuit", "short", "spur", "spurious_copper"]
_OPSET = 17
_STRIDE = 16


def _graph(size: int, classes: int, rng: np.random.Generator) -> onnx.ModelProto:
    spec = InputSpec.for_size(size)
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1) * 255
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1) * 255

    def weight(name: str, *shape: int, scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    initializers = [
        numpy_helper.from_array(mean, "mean"),
        numpy_helper.from_array(std, "std"),
        weight("w1", 16, 3, 4, 4, scale=0.3),
        weight("b1", 16, scale=0.1),
        weight("w2", 16, 16, 3, 3, scale=0.15),
        weight("head", classes, 16, 1, 1, scale=1.0),  # wide logit gaps: FP16 keeps every top-1
        weight("bias", classes, scale=0.5),
    ]
    nodes = [
        helper.make_node("Cast", [IMAGE], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["nchw", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Conv", ["normalised", "w1", "b1"], ["c1"], strides=[4, 4]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[4, 4], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["features"]),
        helper.make_node("Conv", ["features", "head"], [CAM]),
        helper.make_node("ReduceMean", [CAM], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("Add", ["pooled", "bias"], [LOGITS]),
    ]
    cells = size // _STRIDE
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, ["N", size, size, 3])],
        [
            helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info(CAM, TensorProto.FLOAT, ["N", classes, cells, cells]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


class _Noise(CalibrationDataReader):
    def __init__(self, size: int, count: int = 16) -> None:
        rng = np.random.default_rng(1)
        self._batches = iter([{IMAGE: rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)} for _ in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def write_tiny_bundle(out: Path, *, size: int = 64, name: str = "tiny", seed: int = 0) -> Path:
    """Write the bundle to ``out`` (created) and return it."""
    out.mkdir(parents=True, exist_ok=True)
    model = _graph(size, len(CLASSES), np.random.default_rng(seed))
    onnx.save(model, str(out / "model.onnx"))
    to_fp16(out / "model.onnx", out / "model.fp16.onnx")
    for activations, quant_type in (("u8s8", QuantType.QUInt8), ("s8s8", QuantType.QInt8)):
        quantize_static(
            str(out / "model.onnx"),
            str(out / f"model.int8.{activations}.onnx"),
            _Noise(size),
            quant_format=QuantFormat.QDQ,
            activation_type=quant_type,
            weight_type=QuantType.QInt8,
        )
    manifest = BundleManifest(
        model_name=name,
        model_version="1.0.0",
        classes=CLASSES,
        ok_class="ok",
        input=InputSpec.for_size(size),
        heatmap=HeatmapSpec(source_layer="conv2", stride=_STRIDE),
        threshold=0.5,
        variants={
            "fp32": Variant(file="model.onnx", precision=Precision.FP32),
            "fp16": Variant(file="model.fp16.onnx", precision=Precision.FP16),
            "int8-u8s8": Variant(file="model.int8.u8s8.onnx", precision=Precision.INT8, activations="uint8"),
            "int8-s8s8": Variant(file="model.int8.s8s8.onnx", precision=Precision.INT8, activations="int8"),
        },
    )
    write_manifest(out, manifest)
    return out
