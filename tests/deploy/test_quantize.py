"""INT8 (two flavours) and FP16: structure of the graphs and the scores in the manifest."""

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploy.quantize import quantize_bundle
from edge_inspector.bundle import Precision, load_bundle
from edge_inspector.errors import BundleError


def _zero_point_types(path: Path) -> tuple[set[int], bool]:
    """Element types of activation zero points, and whether any weight is per-channel."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    activation_types: set[int] = set()
    per_channel = False
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            activation_types.add(inits[node.input[2]].data_type)
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            per_channel |= scale.size > 1
    return activation_types, per_channel


def test_int8_flavours(bundle_dir: Path) -> None:
    u8_types, u8_per_channel = _zero_point_types(bundle_dir / "model.int8.u8s8.onnx")
    s8_types, s8_per_channel = _zero_point_types(bundle_dir / "model.int8.s8s8.onnx")
    assert u8_types == {onnx.TensorProto.UINT8} and u8_per_channel
    assert s8_types == {onnx.TensorProto.INT8} and s8_per_channel
    model = onnx.load(str(bundle_dir / "model.int8.s8s8.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [
        numpy_helper.to_array(inits[n.input[2]])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2
    ]
    assert zero_points and all(np.all(z == 0) for z in zero_points)  # symmetric, as TensorRT requires


def test_fp16_keeps_the_interface(bundle_dir: Path) -> None:
    model = onnx.load(str(bundle_dir / "model.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_manifest_records_scores(bundle_dir: Path) -> None:
    manifest = load_bundle(bundle_dir).manifest
    assert set(manifest.variants) == {"fp32", "fp16", "int8-u8s8", "int8-s8s8"}
    for name in ("int8-u8s8", "int8-s8s8", "fp16"):
        variant = manifest.variants[name]
        assert variant.accuracy is not None and variant.top1_agreement is not None
        assert variant.accuracy_delta is not None and -1.0 <= variant.accuracy_delta <= 1.0
    assert manifest.variants["fp16"].top1_agreement == 1.0
    calibration = manifest.variants["int8-u8s8"].calibration
    assert calibration is not None and calibration["method"] == "minmax" and calibration["images"] == 42
    assert manifest.variant(Precision.INT8, "int8")[0] == "int8-s8s8"
    assert manifest.variant(Precision.INT8, "uint8")[0] == "int8-u8s8"


def test_empty_calibration_folder_refused(bundle_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "calib"
    (empty / "ok").mkdir(parents=True)
    with pytest.raises(BundleError, match="no readable calibration images"):
        quantize_bundle(bundle_dir, empty)


def test_few_calibration_images_warn(bundle_dir: Path, synth_data: Path, tmp_path: Path, caplog) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    with caplog.at_level(logging.WARNING):
        quantize_bundle(copy, synth_data, samples=14)
    assert "only 2 calibration image(s) of class 'missing_hole'" in caplog.text
    load_bundle(copy)  # hashes rewritten and consistent
