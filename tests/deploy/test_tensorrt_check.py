"""The TensorRT parser rules, checked on the CPU: one small graph per broken rule, and our own bundles."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy.cli import main as deploy_main
from deploy.engine_build import build_engine
from deploy.tensorrt_check import check_bundle, check_model
from edge_inspector.bundle import Precision, load_bundle, write_manifest
from edge_inspector.errors import BackendError, BundleError


def _graph(
    *,
    transpose_first: bool = False,
    zero_point: int | None = 0,
    scale: float = 0.02,
    weight_dtype: int = TensorProto.INT8,
    weight_axis: int = 0,
    op: str = "Relu",
    domain: str = "",
    opset: int = 19,
    width: int | str = 8,
    axes_initializer: bool = True,
) -> onnx.ModelProto:
    """uint8 NHWC in -> Cast -> Transpose -> Q/DQ -> Conv (DQ weights) -> ``op`` -> ReduceMean -> out.

    With the defaults it is a graph TensorRT takes; each argument breaks one rule.
    """
    nodes = []
    if transpose_first:
        nodes += [
            helper.make_node("Transpose", ["image"], ["nchw_u8"], perm=[0, 3, 1, 2], name="to_nchw"),
            helper.make_node("Cast", ["nchw_u8"], ["x"], to=TensorProto.FLOAT, name="cast"),
        ]
    else:
        nodes += [
            helper.make_node("Cast", ["image"], ["nhwc"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Transpose", ["nhwc"], ["x"], perm=[0, 3, 1, 2], name="to_nchw"),
        ]
    q_inputs = ["x", "x_scale"] + (["x_zero"] if zero_point is not None else [])
    nodes += [
        helper.make_node("QuantizeLinear", q_inputs, ["x_q"], name="quantize_x"),
        helper.make_node("DequantizeLinear", ["x_q", *q_inputs[1:]], ["x_dq"], name="dequantize_x"),
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=weight_axis, name="dequantize_w"
        ),
        helper.make_node("Conv", ["x_dq", "w", "bias"], ["y"], name="conv"),
        helper.make_node(op, ["y"], ["z"], domain=domain, name="act"),
    ]
    if opset >= 18:
        axes_input = "axes"
        if not axes_initializer:
            nodes.append(
                helper.make_node(
                    "Constant", [], ["axes"], value=helper.make_tensor("v", TensorProto.INT64, [2], [2, 3])
                )
            )
        nodes.append(helper.make_node("ReduceMean", ["z", axes_input], ["out"], keepdims=0, name="pool"))
    else:
        nodes.append(helper.make_node("ReduceMean", ["z"], ["out"], axes=[2, 3], keepdims=0, name="pool"))
    initializers = [
        numpy_helper.from_array(np.array(scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.float32), "bias"),
        helper.make_tensor("w_q", weight_dtype, [4, 3, 1, 1], np.ones(12, np.int64).tolist()),
    ]
    if zero_point is not None:
        initializers.append(numpy_helper.from_array(np.array(zero_point, np.int8), "x_zero"))
    if opset >= 18 and axes_initializer:
        initializers.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 8, width, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])],
        initializers,
    )
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=imports)


def _rules(model: onnx.ModelProto) -> set[str]:
    return {v.rule for v in check_model(model)}


def test_the_reference_graph_passes() -> None:
    model = _graph()
    onnx.checker.check_model(model, full_check=True)
    assert check_model(model) == []
    assert check_model(_graph(opset=17)) == []


@pytest.mark.parametrize(
    ("broken", "rule", "names"),
    [
        ({"transpose_first": True}, "uint8", "uint8 input feeds Transpose"),
        ({"weight_dtype": TensorProto.INT32}, "dequantize-type", "dequantizes INT32"),
        ({"weight_dtype": TensorProto.UINT8}, "dequantize-type", "dequantizes UINT8"),
        ({"zero_point": 3}, "zero-point", "node quantize_x"),
        ({"zero_point": None}, "zero-point", "QuantizeLinear then outputs uint8"),
        ({"scale": -0.5}, "scale", "node quantize_x"),
        ({"weight_axis": 1}, "weight-axis", "axis 1, not 0"),
        ({"op": "Unique"}, "operator", "Unique is not in TensorRT's ONNX op list"),
        ({"op": "Gelu", "domain": "com.microsoft"}, "operator", "com.microsoft.Gelu"),
        ({"opset": 21}, "opset", "opset 21"),
        ({"opset": 8}, "opset", "opset 8"),
        ({"width": "W"}, "dynamic-shape", "only N may vary"),
        ({"axes_initializer": False}, "constant-axes", "node pool (ReduceMean)"),
    ],
)
def test_each_broken_rule_is_refused_naming_node_and_rule(broken: dict, rule: str, names: str) -> None:
    violations = check_model(_graph(**broken))
    assert rule in {v.rule for v in violations}
    text = "\n".join(str(v) for v in violations if v.rule == rule)
    assert names in text and f"[{rule}]" in text


def test_quantize_without_zero_point_also_makes_an_internal_uint8() -> None:
    assert _rules(_graph(zero_point=None)) >= {"zero-point", "uint8"}


def test_every_variant_of_our_pipeline_passes(bundle_dir: Path) -> None:
    results = check_bundle(load_bundle(bundle_dir))
    assert set(results) == {"model.onnx", "model.fp16.onnx", "model.int8.s8s8.onnx"}
    assert all(v == [] for v in results.values()), results
    # the CPU flavour is not for TensorRT, and the check sees why: uint8 zero points
    u8 = check_model(onnx.load(str(bundle_dir / "model.int8.u8s8.onnx")))
    assert "uint8" in {v.rule for v in u8}


def test_check_tensorrt_command(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_main(["check-tensorrt", "--bundle", str(bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("TensorRT can parse it") == 3

    broken = _broken_copy(bundle_dir, tmp_path)
    assert deploy_main(["check-tensorrt", "--bundle", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "model.fp16.onnx: 3 problem(s) for TensorRT" in out
    assert "input image: uint8 input feeds Transpose, not a Cast [uint8]" in out


def _broken_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """The bundle with model.fp16.onnx replaced by a graph that transposes the uint8 input."""
    copy = tmp_path / "broken"
    shutil.copytree(bundle_dir, copy)
    onnx.save(_graph(transpose_first=True), str(copy / "model.fp16.onnx"))
    write_manifest(copy, load_bundle(copy, verify=False).manifest)
    return copy


def test_build_engine_checks_before_it_needs_tensorrt(bundle_dir: Path, tmp_path: Path) -> None:
    broken = load_bundle(_broken_copy(bundle_dir, tmp_path))
    with pytest.raises(BundleError, match=r"uint8 input feeds Transpose, not a Cast \[uint8\]"):
        build_engine(broken, Precision.FP16)
    try:
        import tensorrt  # noqa: F401
    except ImportError:  # here: the check passed, and only then TensorRT was needed
        with pytest.raises(BackendError, match="TensorRT is not installed"):
            build_engine(load_bundle(bundle_dir), Precision.INT8)
