"""Float regions are found by graph structure, whatever the nodes are called."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy.qdq_placement import float_regions, name_nodes


def _op_types(model: onnx.ModelProto, names: frozenset[str]) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node if n.name in names)


def test_regions_of_our_exported_model(bundle_dir: Path) -> None:
    model = onnx.load(str(bundle_dir / "model.onnx"))
    regions = float_regions(model)
    assert _op_types(model, regions.prologue) == Counter({"Cast": 1, "Transpose": 1, "Mul": 1, "Sub": 1})
    # the per-cell linear head, then mean-max pooling: (mean + max) * 0.5 + bias
    assert _op_types(model, regions.head) == Counter({"Conv": 1, "ReduceMean": 1, "ReduceMax": 1, "Add": 2, "Mul": 1})
    gates = _op_types(model, regions.gates)
    # 9 CBAM blocks: channel (mean, max, 2x2 MLP convs, relus, add, sigmoid, mul), spatial (mean, max, concat, conv...)
    assert gates["Sigmoid"] == 18 and gates["Mul"] == 18 and gates["Conv"] == 45
    assert gates["ReduceMean"] == 18 and gates["ReduceMax"] == 18 and gates["Concat"] == 9
    convs = sum(n.op_type == "Conv" for n in model.graph.node)
    assert convs - gates["Conv"] - 1 == 53  # the ResNet50 backbone's convolutions are all left to quantize
    assert not regions.gates & {n.name for n in model.graph.node if n.op_type == "Add" and "cbam" not in n.name}


def test_regions_do_not_depend_on_node_names(bundle_dir: Path) -> None:
    model = onnx.load(str(bundle_dir / "model.onnx"))
    before = float_regions(model)
    for node in model.graph.node:
        node.name = ""
    name_nodes(model)
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)
    after = float_regions(model)
    for region in ("prologue", "gates", "head"):
        assert _op_types(model, getattr(after, region)) == _op_types(
            onnx.load(str(bundle_dir / "model.onnx")), getattr(before, region)
        )


def test_a_flatten_gemm_head_and_a_squeeze_excitation_gate() -> None:
    """Another exporter's shapes: Sub-normalised input, SE gate (GAP -> Gemm -> Sigmoid), pool -> Gemm head."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "se_w"),
        numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.float32(0.5), "mean"),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["xn"]),
        helper.make_node("Conv", ["xn", "w1"], ["f1"]),
        helper.make_node("Relu", ["f1"], ["a1"]),
        helper.make_node("GlobalAveragePool", ["a1"], ["s"]),
        helper.make_node("Flatten", ["s"], ["sf"]),
        helper.make_node("Gemm", ["sf", "se_w"], ["se"], transB=1),
        helper.make_node("Sigmoid", ["se"], ["g"]),
        helper.make_node("Unsqueeze", ["g", "axes"], ["g4"]),
        helper.make_node("Mul", ["a1", "g4"], ["gated"]),
        helper.make_node("Conv", ["gated", "w2"], ["f2"]),
        helper.make_node("Relu", ["f2"], ["a2"]),
        helper.make_node("GlobalAveragePool", ["a2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["pf"]),
        helper.make_node("Gemm", ["pf", "fc_w"], ["logits"], transB=1),
    ]
    init.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    name_nodes(model)
    regions = float_regions(model)
    assert _op_types(model, regions.prologue) == Counter({"Sub": 1})
    assert _op_types(model, regions.gates) == Counter(
        {"GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1, "Sigmoid": 1, "Unsqueeze": 1, "Mul": 1}
    )
    assert _op_types(model, regions.head) == Counter({"GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1})
