"""INT8 (two flavours) and FP16: structure of the graphs and the scores in the manifest."""

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploy.quantize import MIN_ONNXRUNTIME, quantize_bundle, require_onnxruntime
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
    fp32 = manifest.variants["fp32"].accuracy
    assert fp32 is not None
    for name in ("int8-u8s8", "int8-s8s8", "fp16"):
        variant = manifest.variants[name]
        assert variant.accuracy is not None and variant.top1_agreement is not None
        assert variant.accuracy_delta == pytest.approx(variant.accuracy - fp32)  # same images as fp32's
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


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _dequantized(graph: onnx.GraphProto) -> set[str]:
    return {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}


def _float_nodes(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """What must stay float, found from our model's known shape (not from deploy.qdq_placement)."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    # prologue: from the input up to (not including) the first Conv
    prologue, node = [], consumers["image"][0]
    while node.op_type != "Conv":
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            prologue.append(node)
        (node,) = consumers[node.output[0]]
    # head: the conv that makes cam (behind the fp16 -> fp32 Cast, if any) and all that follows it
    cam_conv = producer["cam"]
    while cam_conv.op_type == "Cast":
        cam_conv = producer[cam_conv.input[0]]
    head, stack = [], [cam_conv]
    while stack:
        node = stack.pop()
        if node not in head:  # the pooling joins two paths (mean and max)
            head.append(node)
            stack += [c for o in node.output for c in consumers.get(o, [])]
    # gates: for sigmoid -> Mul(x, gate), walk back from the sigmoid until x
    gates = []
    for sigmoid in (n for n in graph.node if n.op_type == "Sigmoid"):
        (mul,) = consumers[sigmoid.output[0]]
        gated = next(i for i in mul.input if i != sigmoid.output[0])
        stack, seen = [sigmoid], set()
        while stack:
            node = stack.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            gates.append(node)
            for name in node.input:
                upstream = producer.get(name)
                # stop at the gated tensor (through its Q/DQ, if any) and at weights
                if name == gated or upstream is None or upstream.op_type in ("DequantizeLinear", "QuantizeLinear"):
                    continue
                stack.append(upstream)
    return {"prologue": prologue, "head": head, "gates": gates}


@pytest.mark.parametrize("file", ["model.int8.u8s8.onnx", "model.int8.s8s8.onnx"])
def test_normalisation_gates_and_head_stay_float(bundle_dir: Path, file: str) -> None:
    """No int8 weights and no quantized outputs there; in the TensorRT flavour, no int8 inputs either.

    (The CPU flavour quantizes the outputs of the layers before them, so there
    these regions read dequantized activations.)
    """
    graph = onnx.load(str(bundle_dir / file)).graph
    inits = {i.name for i in graph.initializer}
    dq_weights = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    dequantized = _dequantized(graph)
    consumers = _consumers(graph)
    regions = _float_nodes(graph)
    assert [n.op_type for n in regions["prologue"]] == ["Cast", "Transpose", "Mul", "Sub"]
    head = sorted(n.op_type for n in regions["head"] if n.op_type != "Cast")
    assert head == ["Add", "Add", "Conv", "Mul", "ReduceMax", "ReduceMean"]  # linear head, mean-max pooling
    # CBAM in 9 blocks: the 2-conv MLP on the mean and on the max, and the spatial conv
    assert sum(n.op_type == "Conv" for n in regions["gates"]) == 5 * 9
    for region, nodes in regions.items():
        int8_weights = [n.name for n in nodes if set(n.input) & dq_weights]
        assert int8_weights == [], f"{file}: {region} has int8 weights: {int8_weights}"
        quantized_out = [
            n.name for n in nodes for o in n.output for c in consumers.get(o, []) if c.op_type == "QuantizeLinear"
        ]
        # the prologue ends in the first conv's input: quantized there, and only there
        assert quantized_out == ([] if region != "prologue" else [regions["prologue"][-1].name]), file
        if "s8s8" in file:
            assert [n.name for n in nodes if set(n.input) & dequantized] == [], f"{file}: {region} reads int8"
    for node in regions["prologue"][:-1]:
        assert all(c.op_type != "QuantizeLinear" for o in node.output for c in consumers[o]), node.name


def test_tensorrt_flavour_quantizes_only_weighted_layer_inputs(bundle_dir: Path) -> None:
    model = onnx.load(str(bundle_dir / "model.int8.s8s8.onnx"))
    graph = model.graph
    consumers = _consumers(graph)
    inits = {i.name: i for i in graph.initializer}
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    assert dq
    for node in dq:
        assert {c.op_type for c in consumers[node.output[0]]} <= {"Conv", "Gemm"}, node.name
        if node.input[0] in inits:  # a weight: int8, per-channel on the output channels
            weight = inits[node.input[0]]
            assert weight.data_type == onnx.TensorProto.INT8, node.name
            assert numpy_helper.to_array(inits[node.input[1]]).shape == (weight.dims[0],), node.name
            assert next(a.i for a in node.attribute if a.name == "axis") == 0, node.name
    for conv in (n for n in graph.node if n.op_type == "Conv" and len(n.input) > 2):
        bias = conv.input[2]
        assert bias in inits and inits[bias].data_type == onnx.TensorProto.FLOAT16, f"{conv.name}: bias {bias}"


def test_tensorrt_flavour_runs_its_float_parts_in_fp16(bundle_dir: Path) -> None:
    model = onnx.load(str(bundle_dir / "model.int8.s8s8.onnx"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    scales = {inits[n.input[1]].data_type for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert scales == {onnx.TensorProto.FLOAT16}
    (cast,) = _consumers(graph)["image"]
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT16
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.FLOAT] * 2
    floats = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert floats == []


def test_onnxruntime_floor_is_the_one_quantize_needs() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    (floor,) = [d for d in project["dependencies"] if d.startswith("onnxruntime")]
    assert floor == f"onnxruntime>={MIN_ONNXRUNTIME}"
    # calibration_cache_path, the newest argument quantize passes, arrived in 1.27
    assert tuple(int(p) for p in MIN_ONNXRUNTIME.split(".")) >= (1, 27)
    with pytest.raises(BundleError, match=r"needs onnxruntime >= 1\.27, this is 1\.26\.0"):
        require_onnxruntime("1.26.0")
    require_onnxruntime("1.27.0")
    require_onnxruntime("1.32.0")


@pytest.mark.parametrize(("file", "optimize"), [("model.int8.u8s8.onnx", True), ("model.int8.s8s8.onnx", False)])
def test_int8_flavours_compute_what_fp32_computes(
    bundle_dir: Path, synth_data: Path, file: str, optimize: bool
) -> None:
    """Logits within a fifth of FP32's range (a wrong graph is off by about the whole range)."""
    from deploy.export import load_images, onnx_session
    from trainer.evaluation import folder_samples

    manifest = load_bundle(bundle_dir).manifest
    images, _ = load_images(folder_samples(synth_data, manifest.classes)[::3], manifest.input)
    reference = onnx_session(bundle_dir / "model.onnx").run(["logits"], {"image": images})[0]
    logits = onnx_session(bundle_dir / file, optimize=optimize).run(["logits"], {"image": images})[0]
    assert np.abs(logits - reference).max() <= 0.2 * float(reference.max() - reference.min())
