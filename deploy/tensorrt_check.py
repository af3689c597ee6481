"""Will TensorRT's ONNX parser take this graph? Checked on the CPU, without TensorRT.

The rules are those documented for the TensorRT 10 ONNX parser
(onnx-tensorrt ``docs/operators.md``, the Q/DQ import code and NVIDIA's
answers on the TensorRT issue tracker), as they bear on our graphs:

- ``opset``: the default-domain opset is one the parser reads (9 to 20);
- ``operator``: every node is a standard ONNX op the parser supports;
- ``uint8``: uint8 appears only as the network input, consumed by Cast nodes
  only (not even a Transpose may touch it);
- ``dequantize-type``: DequantizeLinear dequantizes int8 (fp8, int4) only,
  never int32 biases or uint8;
- ``zero-point``: every Q/DQ zero point is a constant 0 (symmetric only);
- ``scale``: every Q/DQ scale is a constant, positive;
- ``weight-axis``: per-channel weight scales are on axis 0 (output channels);
- ``constant-axes``: reduction axes given as an input are an initializer;
- ``dynamic-shape``: only the batch dimension of inputs and outputs is dynamic.

A graph that passes can still fail to build (memory, a kernel missing on that
GPU); one that fails here would certainly fail on the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edge_inspector.backends.tensorrt_engine import source_variant
from edge_inspector.bundle import Bundle, Precision
from edge_inspector.errors import BundleError

__all__ = ["OPSETS", "SUPPORTED_OPS", "Violation", "check_bundle", "check_model", "format_violations"]

OPSETS = range(9, 21)  # TensorRT 10.0 reads opsets 9 to 20; later releases read more
# onnx-tensorrt docs/operators.md, TensorRT 10.3 (JetPack 6.1 and 6.2): the ops marked supported
_SUPPORTED = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
    GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization
    IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization
    LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not
    OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor
"""
SUPPORTED_OPS = frozenset(_SUPPORTED.split())
_DEQUANTIZABLE = {TensorProto.INT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4}
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_AXES_INPUT_SINCE = {  # opset from which these ops take their axes as an input
    "ReduceMean": 18,
    "ReduceMax": 18,
    "ReduceMin": 18,
    "ReduceProd": 18,
    "ReduceL1": 18,
    "ReduceL2": 18,
    "ReduceLogSum": 18,
    "ReduceLogSumExp": 18,
    "ReduceSumSquare": 18,
    "ReduceSum": 13,
}


@dataclass(frozen=True)
class Violation:
    """One broken rule at one node (or graph input / output)."""

    where: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.rule}]"


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor the graph names (after shape inference)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an unknown op: check with the types the file carries
        inferred = model
    graph = inferred.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for info in (*graph.input, *graph.output, *graph.value_info):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = value.data_type
    return types


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"node {node.name or f'#{index}'} ({node.op_type})"


def _constant(name: str, inits: dict[str, TensorProto]) -> np.ndarray | None:
    return numpy_helper.to_array(inits[name]) if name in inits else None


def _check_qdq(
    node: onnx.NodeProto, where: str, inits: dict[str, TensorProto], types: dict[str, int]
) -> list[Violation]:
    found: list[Violation] = []
    if node.op_type == "DequantizeLinear" and types.get(node.input[0]) not in _DEQUANTIZABLE:
        name = TensorProto.DataType.Name(types.get(node.input[0], TensorProto.UNDEFINED))
        found.append(Violation(where, "dequantize-type", f"dequantizes {name}; TensorRT dequantizes int8 only"))
    zero = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zero is None:
        if node.op_type == "QuantizeLinear":
            found.append(Violation(where, "zero-point", "no zero point: QuantizeLinear then outputs uint8"))
    else:
        value = _constant(zero, inits)
        if value is None or np.any(value != 0):
            found.append(Violation(where, "zero-point", "zero point is not a constant 0 (TensorRT is symmetric)"))
    scale = _constant(node.input[1], inits)
    if scale is None or np.any(scale <= 0):
        found.append(Violation(where, "scale", "scale is not a constant of positive values"))
    elif scale.size > 1 and node.op_type == "DequantizeLinear" and node.input[0] in inits:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if axis != 0:
            found.append(Violation(where, "weight-axis", f"per-channel weight scale on axis {axis}, not 0"))
    return found


def _check_io(model: onnx.ModelProto, consumers: dict[str, list[onnx.NodeProto]]) -> list[Violation]:
    found: list[Violation] = []
    for kind, infos in (("input", model.graph.input), ("output", model.graph.output)):
        for info in infos:
            tensor = info.type.tensor_type
            dims = list(tensor.shape.dim)
            if any(not d.HasField("dim_value") for d in dims[1:]):
                shape = ["?" if not d.HasField("dim_value") else d.dim_value for d in dims]
                found.append(Violation(f"{kind} {info.name}", "dynamic-shape", f"shape {shape}: only N may vary"))
            if tensor.elem_type == TensorProto.UINT8:
                if kind == "output":
                    found.append(Violation(f"output {info.name}", "uint8", "uint8 output"))
                for node in consumers.get(info.name, []):
                    if node.op_type != "Cast":
                        found.append(
                            Violation(f"input {info.name}", "uint8", f"uint8 input feeds {node.op_type}, not a Cast")
                        )
    return found


def check_model(model: onnx.ModelProto) -> list[Violation]:
    """Every rule of the module docstring that ``model`` breaks (empty: TensorRT can parse it)."""
    found: list[Violation] = []
    opset = _opset(model)
    if opset not in OPSETS:
        found.append(Violation("model", "opset", f"opset {opset}; TensorRT 10 reads {OPSETS[0]} to {OPSETS[-1]}"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    types = _types(model)
    inputs = {i.name for i in graph.input}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found += _check_io(model, consumers)
    for index, node in enumerate(graph.node):
        where = _node_label(node, index)
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            domain = f"{node.domain}." if node.domain else ""
            found.append(Violation(where, "operator", f"{domain}{node.op_type} is not in TensorRT's ONNX op list"))
        uint8 = [t for t in (*node.input, *node.output) if t and t not in inputs and types.get(t) == TensorProto.UINT8]
        if uint8:
            found.append(Violation(where, "uint8", f"uint8 tensor {uint8[0]} inside the network"))
        if node.op_type in _QDQ:
            found += _check_qdq(node, where, inits, types)
        since = _AXES_INPUT_SINCE.get(node.op_type)
        axes = node.input[1] if since is not None and opset >= since and len(node.input) > 1 else ""
        if axes and axes not in inits:
            found.append(Violation(where, "constant-axes", "reduction axes are not an initializer"))
    return found


def check_bundle(bundle: Bundle) -> dict[str, list[Violation]]:
    """Check every ONNX file TensorRT would build an engine from: bundle file -> violations."""
    results: dict[str, list[Violation]] = {}
    for precision in Precision:
        try:
            file = source_variant(bundle.manifest, precision).file
        except BundleError:  # no variant TensorRT would build this precision from
            continue
        results[file] = check_model(onnx.load(str(bundle.path(file))))
    return results


def format_violations(path: str | Path, violations: list[Violation]) -> str:
    """One line per violation, or that the file passes."""
    if not violations:
        return f"{path}: TensorRT can parse it"
    return "\n".join([f"{path}: {len(violations)} problem(s) for TensorRT"] + [f"  {v}" for v in violations])
