"""ONNX graph rewrites for the quantized and half-precision variants (``edge-deploy quantize``).

Pure graph surgery on ``onnx`` models: no calibration, no scoring. Which
nodes stay float is :mod:`deploy.qdq_placement`'s business.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import version_converter
from onnxruntime.transformers.float16 import convert_float_to_float16

from deploy.qdq_placement import WEIGHTED_OPS, name_nodes

__all__ = [
    "FP16_QDQ_OPSET",
    "float_inputs_outside_weighted_layers",
    "float_parts_to_fp16",
    "prepare",
    "to_fp16",
]

# the float parts of the TensorRT flavour in fp16: Q/DQ with fp16 scales needs opset 19
FP16_QDQ_OPSET = 19


def float_inputs_outside_weighted_layers(model: onnx.ModelProto) -> None:
    """Give every other consumer of a quantized activation the float tensor back.

    The quantizer shares one Q/DQ pair among all consumers of a tensor, so a
    residual Add would read the int8-rounded copy its sibling conv reads.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    source = {  # DQ output -> the float tensor its Q quantized
        n.output[0]: producer[n.input[0]].input[0]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits and n.input[0] in producer
    }
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            for i, name in enumerate(node.input):
                if name in source:
                    node.input[i] = source[name]
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    while True:  # drop the Q/DQ nodes nothing reads any more
        dead = [
            n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used
        ]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}


def float_parts_to_fp16(model: onnx.ModelProto, path: Path) -> None:
    """Run what Q/DQ leaves in float in fp16, keeping uint8 in and float32 out.

    A strongly typed TensorRT network runs each layer in the precision its
    graph states: with fp32 scales, CBAM, the head and every residual add
    would run in fp32, and the INT8 engine would lose to the FP16 one.
    """
    model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    model = convert_float_to_float16(model, keep_io_types=True)
    _constants_to_initializers(model)
    _drop_unused_opsets(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Turn Constant nodes (the opset 18 reduction axes) into initializers, as TensorRT wants them."""
    keep = []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None:
            keep.append(node)
            continue
        value.name = node.output[0]
        model.graph.initializer.append(value)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _drop_unused_opsets(model: onnx.ModelProto) -> None:
    """Remove the opset imports of domains no node uses (the quantizer adds several)."""
    used = {n.domain for n in model.graph.node} | {"", "ai.onnx"}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def to_fp16(source: Path, target: Path) -> None:
    """``source`` with fp16 weights and arithmetic, uint8 in and float32 out, written to ``target``."""
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def prepare(source: Path, target: Path) -> None:
    """Shape inference and graph clean-up that ONNX Runtime recommends, then every node named."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    model = onnx.load(str(target))
    name_nodes(model)
    onnx.save(model, str(target))
