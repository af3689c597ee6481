"""The Prometheus endpoint, read back with prometheus-client's own parser."""

from datetime import datetime, timezone

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_inspector.messages import CameraStatus, Latency, ModelRef, Status
from edge_inspector.metrics import AgentMetrics

MODEL = ModelRef(name="pcb", version="1.2.0", sha256="ab" * 32, backend="openvino", precision="int8")


def _status() -> Status:
    return Status(
        station="s1",
        state="online",
        at=datetime.now(timezone.utc),
        model=MODEL,
        cameras=[
            CameraStatus(name="top", source="/dev/video0", mode="free-running", state="streaming"),
            CameraStatus(name="side", source="rtsp://***@cam", mode="triggered", state="reconnecting"),
        ],
        uptime_s=12.5,
        counters={"inferred": 7, "captured": 9, "verdicts.ok": 5, "verdicts.short": 2},
        spool={"verdicts": 3, "heatmaps": 1, "bytes": 4096, "disk_full": 0, "evicted_heatmap": 2, "lost": 0},
        broker_connected=True,
    )


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(family, name: str, **labels: str) -> float:
    (sample,) = [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sample.value


def test_counters_gauges_camera_states_model_info_and_stage_histograms() -> None:
    metrics = AgentMetrics(_status)
    latency = Latency(preprocess_ms=2.0, inference_ms=30.0, postprocess_ms=4.0, total_ms=45.0, batch=1)
    for _ in range(3):
        metrics.observe(latency)
    families = _families(generate_latest(metrics.registry).decode())

    inferred = families["edge_inspector_inferred"]
    assert inferred.type == "counter" and _value(inferred, "edge_inspector_inferred_total") == 7
    verdicts = families["edge_inspector_verdicts"]
    assert verdicts.type == "counter"
    assert _value(verdicts, "edge_inspector_verdicts_total", label="ok") == 5
    assert _value(verdicts, "edge_inspector_verdicts_total", label="short") == 2
    assert families["edge_inspector_spool_verdicts"].type == "gauge"
    assert _value(families["edge_inspector_spool_bytes"], "edge_inspector_spool_bytes") == 4096
    evicted = families["edge_inspector_spool_evicted_heatmap"]
    assert evicted.type == "counter" and _value(evicted, "edge_inspector_spool_evicted_heatmap_total") == 2
    assert _value(families["edge_inspector_broker_connected"], "edge_inspector_broker_connected") == 1
    assert _value(families["edge_inspector_uptime_seconds"], "edge_inspector_uptime_seconds") == 12.5

    cameras = families["edge_inspector_camera_state"]
    assert cameras.type == "gauge"
    assert _value(cameras, "edge_inspector_camera_state", camera="top", state="streaming") == 1
    assert _value(cameras, "edge_inspector_camera_state", camera="top", state="ended") == 0
    assert _value(cameras, "edge_inspector_camera_state", camera="side", state="reconnecting") == 1
    assert sum(s.value for s in cameras.samples) == 2  # one state each

    (info,) = families["edge_inspector_model_info"].samples  # an info metric: its labels, value 1
    assert info.labels == MODEL.model_dump() and info.value == 1

    stages = families["edge_inspector_stage_seconds"]
    assert stages.type == "histogram"
    assert _value(stages, "edge_inspector_stage_seconds_count", stage="inference") == 3
    assert _value(stages, "edge_inspector_stage_seconds_sum", stage="total") == 3 * 0.045
    assert _value(stages, "edge_inspector_stage_seconds_bucket", stage="inference", le="0.025") == 0
    assert _value(stages, "edge_inspector_stage_seconds_bucket", stage="inference", le="0.05") == 3
