"""Sparkplug B messages of one station: topics, metric definitions with their aliases, and payloads.

Pure functions of their inputs (no MQTT, no clock unless given one), so
that what goes on the wire is tested without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from edge_inspector.messages import ModelRef, Verdict
from edge_inspector.outbox.sparkplug import sparkplug_b_pb2 as pb

__all__ = [
    "NAMESPACE",
    "REBIRTH",
    "SEQ_MODULO",
    "device_birth",
    "device_metrics",
    "node_birth",
    "node_death",
    "topic",
    "verdict_data",
]

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
SEQ_MODULO = 256
"""``seq`` and ``bdSeq`` run 0-255 and wrap."""

_FIELDS = {pb.Boolean: "boolean_value", pb.UInt64: "long_value", pb.Int64: "long_value", pb.Double: "double_value"}
_FIELDS[pb.String] = "string_value"
_DEVICE_ALIAS_BLOCK = 1000  # device i's aliases are 1000 * (i + 1) + metric index: unique across the node


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    """``spBv1.0/{group}/{kind}/{node}[/{device}]``."""
    return "/".join([NAMESPACE, group, kind, node, *([device] if device else [])])


def device_metrics(classes: Sequence[str]) -> list[tuple[str, int]]:
    """The metrics of a camera's verdicts, (name, datatype), in alias order."""
    metrics = [
        ("verdict/seq", pb.UInt64),
        ("verdict/label", pb.String),
        ("verdict/is_defect", pb.Boolean),
        ("verdict/score", pb.Double),
        ("verdict/confidence", pb.Double),
        ("verdict/threshold", pb.Double),
        ("verdict/part_id", pb.String),
        ("verdict/latency_ms", pb.Double),
        ("verdict/model_version", pb.String),
    ]
    return metrics + [(f"verdict/probability/{name}", pb.Double) for name in classes]


def _alias(device_index: int, metric_index: int) -> int:
    return _DEVICE_ALIAS_BLOCK * (device_index + 1) + metric_index


def _ms(at: datetime | None = None) -> int:
    return int((at.timestamp() if at is not None else time.time()) * 1000)


def _add(payload: pb.Payload, datatype: int, value: Any, *, typed: bool = True, **fields: Any) -> pb.Payload.Metric:
    """A metric; ``typed``: with its datatype (births and deaths; data leaves it to the birth)."""
    metric = payload.metrics.add(**fields)
    if typed:
        metric.datatype = datatype
    if value is None:
        metric.is_null = True
    else:
        setattr(metric, _FIELDS[datatype], value)
    return metric


def node_birth(bd_seq: int, model: ModelRef, station: str) -> bytes:
    """NBIRTH (``seq`` 0): ``bdSeq`` as in the will of this MQTT session, the rebirth control, the model."""
    payload = pb.Payload(timestamp=_ms(), seq=0)
    _add(payload, pb.Int64, bd_seq, name="bdSeq")
    _add(payload, pb.Boolean, False, name=REBIRTH)
    for name, value in (
        ("Properties/station", station),
        ("Model/name", model.name),
        ("Model/version", model.version),
        ("Model/sha256", model.sha256),
        ("Model/backend", model.backend),
        ("Model/precision", model.precision),
    ):
        _add(payload, pb.String, value, name=name)
    return payload.SerializeToString()


def node_death(bd_seq: int) -> bytes:
    """NDEATH, the last will: the ``bdSeq`` of the NBIRTH it ends (no ``seq``)."""
    payload = pb.Payload(timestamp=_ms())
    _add(payload, pb.Int64, bd_seq, name="bdSeq")
    return payload.SerializeToString()


def device_birth(device_index: int, classes: Sequence[str], seq: int) -> bytes:
    """DBIRTH of a camera: every verdict metric with its name, alias and type, null until its first verdict."""
    payload = pb.Payload(timestamp=_ms(), seq=seq)
    for index, (name, datatype) in enumerate(device_metrics(classes)):
        _add(payload, datatype, None, name=name, alias=_alias(device_index, index))
    return payload.SerializeToString()


def verdict_data(verdict: Verdict, device_index: int, classes: Sequence[str], seq: int, historical: bool) -> bytes:
    """DDATA of one verdict, metrics by alias only (names and types are in the DBIRTH); ``historical`` for
    verdicts older than this MQTT session.

    Probabilities of classes the DBIRTH did not declare (a verdict spooled
    before a reload changed the classes) are left out.
    """
    values: dict[str, Any] = {
        "verdict/seq": verdict.seq,
        "verdict/label": verdict.label,
        "verdict/is_defect": verdict.is_defect,
        "verdict/score": verdict.score,
        "verdict/confidence": verdict.confidence,
        "verdict/threshold": verdict.threshold,
        "verdict/part_id": verdict.part_id,
        "verdict/latency_ms": verdict.latency.total_ms,
        "verdict/model_version": verdict.model.version,
    }
    values |= {f"verdict/probability/{name}": p for name, p in verdict.probabilities.items()}
    at = _ms(verdict.captured_at)
    payload = pb.Payload(timestamp=_ms(), seq=seq)
    for index, (name, datatype) in enumerate(device_metrics(classes)):
        if name in values:
            metric = _add(payload, datatype, values[name], typed=False, alias=_alias(device_index, index), timestamp=at)
            if historical:
                metric.is_historical = True
    return payload.SerializeToString()
