"""Which nodes of an exported graph stay in float when it is quantized.

Chosen by graph structure, never by the exporter's node names, so the choice
survives an exporter upgrade or another training framework:

- the **prologue**: everything between the graph input and the first
  weighted layer (the uint8 cast, layout change and normalisation);
- the **gates**: every ``x * sigmoid(f(x))`` attention gate (CBAM's channel
  and spatial attention, squeeze-and-excitation; reshapes between the sigmoid
  and the product allowed), i.e. the nodes on a path from ``x`` to the gate;
- the **head**: everything after the last tensor that every path to the
  outputs goes through (the final feature map), i.e. the CAM convolution and
  the logits.

These are a sliver of the compute and where 8-bit rounding flips top-1 most.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import onnx

__all__ = ["WEIGHTED_OPS", "FloatRegions", "float_regions", "name_nodes"]

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_GATE_OPS = frozenset({"Sigmoid", "HardSigmoid"})
_RESHAPING_OPS = frozenset({"Unsqueeze", "Squeeze", "Reshape", "Expand", "Identity", "Cast"})
_POOLING_OPS = _RESHAPING_OPS | {"GlobalAveragePool", "GlobalMaxPool", "Flatten", "Dropout"}


@dataclass(frozen=True)
class FloatRegions:
    """Node names of each region left in float."""

    prologue: frozenset[str]
    gates: frozenset[str]
    head: frozenset[str]

    @property
    def all(self) -> frozenset[str]:
        """Every node left in float."""
        return self.prologue | self.gates | self.head


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (quantizers select nodes by name)."""
    taken = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


class _Graph:
    """Producers, consumers and the tensors that do not depend on the input."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.outputs = {o.name for o in graph.output}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        static = {i.name for i in graph.initializer}
        for index, node in enumerate(self.nodes):
            for name in node.output:
                self.producer[name] = index
            for name in node.input:
                if name:
                    self.consumers[name].append(index)
            # constants, and what is computed from constants only (Identity on shared weights)
            if all(not i or i in static for i in node.input):
                static.update(node.output)
        self.static = static

    def dynamic_inputs(self, index: int) -> list[str]:
        return [i for i in self.nodes[index].input if i and i not in self.static]

    def ancestors(self, tensors: Iterable[str]) -> set[int]:
        """Nodes that any of ``tensors`` depends on (their producers included)."""
        seen: set[int] = set()
        stack = [self.producer[t] for t in tensors if t in self.producer]
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            stack.extend(self.producer[t] for t in self.dynamic_inputs(index) if t in self.producer)
        return seen

    def descendants(self, tensor: str) -> set[int]:
        """Nodes that depend on ``tensor``."""
        seen: set[int] = set()
        stack = list(self.consumers.get(tensor, []))
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            for out in self.nodes[index].output:
                stack.extend(self.consumers.get(out, []))
        return seen


def _prologue(g: _Graph) -> set[int]:
    for index, node in enumerate(g.nodes):
        data = g.dynamic_inputs(index)
        if node.op_type in WEIGHTED_OPS and data:
            return g.ancestors(data[:1])
    return set()


def _gates(g: _Graph) -> set[int]:
    region: set[int] = set()
    for index, node in enumerate(g.nodes):
        if node.op_type != "Mul":
            continue
        data = g.dynamic_inputs(index)
        if len(data) != 2:
            continue
        for gate, gated in (data, data[::-1]):
            producer = g.producer.get(gate)
            while producer is not None and g.nodes[producer].op_type in _RESHAPING_OPS:
                upstream = g.dynamic_inputs(producer)
                producer = g.producer.get(upstream[0]) if upstream else None
            if producer is not None and g.nodes[producer].op_type in _GATE_OPS:
                region |= g.ancestors([gate]) & g.descendants(gated)
                region.add(index)
    return region


def _head(g: _Graph) -> set[int]:
    """What depends on the last cut: the last non-output tensor that is, alone, all that is live.

    Pooling and reshapes right before the cut (``GlobalAveragePool -> Flatten
    -> Gemm``) belong to the head too.
    """
    last_use: dict[str, int] = {}
    for index in range(len(g.nodes)):
        for name in g.dynamic_inputs(index):
            last_use[name] = index
    live: set[str] = set()
    cut = None
    for index, node in enumerate(g.nodes):
        if all(out in g.static for out in node.output):
            continue
        live = {t for t in live if last_use.get(t, -1) > index or t in g.outputs}
        live.update(out for out in node.output if out and (out in last_use or out in g.outputs))
        if len(live) == 1 and not (live & g.outputs):
            cut = next(iter(live))
    while cut in g.producer and g.nodes[g.producer[cut]].op_type in _POOLING_OPS:
        upstream = g.dynamic_inputs(g.producer[cut])
        if len(upstream) != 1:
            break
        cut = upstream[0]
    return g.descendants(cut) if cut is not None else set(range(len(g.nodes)))


def float_regions(model: onnx.ModelProto) -> FloatRegions:
    """The prologue, gates and head of a graph, as node names (name the nodes first).

    Raises:
        ValueError: a node of a region has no name.
    """
    g = _Graph(model.graph)

    def names(indices: set[int]) -> frozenset[str]:
        found = [g.nodes[i].name for i in indices]
        if not all(found):
            raise ValueError("unnamed nodes: call name_nodes() first")
        return frozenset(found)

    return FloatRegions(prologue=names(_prologue(g)), gates=names(_gates(g)), head=names(_head(g)))
