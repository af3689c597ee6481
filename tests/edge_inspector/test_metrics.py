"""The Prometheus endpoint, read back with prometheus-client's own parser, on the status the agent builds."""

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_inspector.config import AgentConfig
from edge_inspector.counters import Counters
from edge_inspector.messages import Latency, ModelRef, Status
from edge_inspector.metrics import AgentMetrics
from edge_inspector.outbox.spool import Outgoing, Spool
from edge_inspector.status_report import build_status

MODEL = ModelRef(name="pcb", version="1.2.0", sha256="ab" * 32, backend="openvino", precision="int8")


def _status(tmp_path: Path) -> Status:
    """What ``build_status`` makes of the agent's counters and a real spool that had to evict two heatmaps."""
    config = AgentConfig.model_validate(
        {
            "station": "s1",
            "cameras": [
                {"name": "top", "source": "/dev/video0"},
                {"name": "side", "source": "rtsp://user:pw@cam/s", "mode": "triggered"},
            ],
            "model": {"bundle": str(tmp_path)},
            "mqtt": {"commands": True},
        }
    )
    counters = Counters()
    counters.inferred(["ok"] * 5 + ["short"] * 2)
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1000)
    for size in (400, 400, 900):  # the third needs room: both heatmaps go
        with spool.batch() as batch:
            batch.next_seq()
            batch.add(Outgoing("heatmap", "t", bytes(size), 0))
    with spool:
        return build_status(
            config, "online", cameras=[], counters=counters, model=MODEL, reload_error=None, spool=spool, publisher=None
        )


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(family, name: str, **labels: str) -> float:
    (sample,) = [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sample.value


def test_counters_gauges_camera_states_model_info_and_stage_histograms(tmp_path: Path) -> None:
    status = _status(tmp_path)
    metrics = AgentMetrics(lambda: status)
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
    assert _value(families["edge_inspector_spool_bytes"], "edge_inspector_spool_bytes") == 900
    evicted = families["edge_inspector_spool_evicted_heatmaps"]
    assert evicted.type == "counter" and _value(evicted, "edge_inspector_spool_evicted_heatmaps_total") == 2
    assert _value(families["edge_inspector_spool_evicted_verdicts"], "edge_inspector_spool_evicted_verdicts_total") == 0
    assert _value(families["edge_inspector_broker_connected"], "edge_inspector_broker_connected") == 0
    assert 0 <= _value(families["edge_inspector_uptime_seconds"], "edge_inspector_uptime_seconds") < 60

    cameras = families["edge_inspector_camera_state"]
    assert cameras.type == "gauge"
    assert _value(cameras, "edge_inspector_camera_state", camera="top", state="connecting") == 1  # not started
    assert _value(cameras, "edge_inspector_camera_state", camera="top", state="streaming") == 0
    assert _value(cameras, "edge_inspector_camera_state", camera="side", state="connecting") == 1
    assert sum(s.value for s in cameras.samples) == 2  # one state each

    (info,) = families["edge_inspector_model_info"].samples  # an info metric: its labels, value 1
    assert info.labels == MODEL.model_dump() and info.value == 1

    stages = families["edge_inspector_stage_seconds"]
    assert stages.type == "histogram"
    assert _value(stages, "edge_inspector_stage_seconds_count", stage="inference") == 3
    assert _value(stages, "edge_inspector_stage_seconds_sum", stage="total") == 3 * 0.045
    assert _value(stages, "edge_inspector_stage_seconds_bucket", stage="inference", le="0.025") == 0
    assert _value(stages, "edge_inspector_stage_seconds_bucket", stage="inference", le="0.05") == 3
