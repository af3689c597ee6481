"""Prometheus metrics of the agent, through prometheus-client.

Counters are counters (``_total``), read from the agent's status at each
scrape: frames inferred, verdicts by label, captured, dropped and skipped
frames, reconnects, reloads, spool evictions, messages sent without
durability or lost. Gauges: spool depth and bytes, a full disk, the broker
connection, uptime, and per camera a 0/1 gauge for each state (``state``
label). The model is an info metric (``edge_inspector_model_info``). A
histogram per stage holds where a frame's time went (preprocess, inference,
postprocess, and capture to verdict in all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edge_inspector.messages import CameraState, Latency, Status

__all__ = ["PREFIX", "AgentMetrics"]

PREFIX = "edge_inspector"
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SPOOL_GAUGES = {
    "verdicts": "verdicts waiting in the spool for the broker's acknowledgement",
    "heatmaps": "heatmaps waiting in the spool",
    "bytes": "payload bytes in the spool",
    "disk_full": "1 while the spool's disk is full and messages go out without durability",
}
_COUNTER_HELP = {
    "inferred": "camera frames through inference",
    "captured": "frames captured, all cameras",
    "dropped": "frames replaced by a newer one before inference (free-running mode)",
    "skipped": "frames grabbed from a live source and not decoded",
    "undecodable": "frames that could not be decoded",
    "failed_frames": "frames that could not be inspected (ROI outside the frame)",
    "reconnects": "camera reconnections",
    "reloads": "models reloaded",
    "reload_failures": "reloads refused (the running model stayed)",
    "bad_commands": "malformed or misaddressed MQTT commands",
    "samples_skipped": "samples not kept because the disk was full",
    "http_inspections": "images inspected through POST /inspect (not published)",
}


class _StatusCollector(Collector):
    """Families read from the agent's status at scrape time."""

    def __init__(self, status: Callable[[], Status]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        for name, value in sorted(status.counters.items()):
            yield CounterMetricFamily(f"{PREFIX}_{name}", _COUNTER_HELP.get(name, name), value=value)
        verdicts = CounterMetricFamily(f"{PREFIX}_verdicts", "verdicts published, by label", labels=["label"])
        for label, value in sorted(status.verdicts.items()):
            verdicts.add_metric([label], value)
        yield verdicts
        for name, value in sorted(status.spool.items()):
            if name in _SPOOL_GAUGES:
                yield GaugeMetricFamily(f"{PREFIX}_spool_{name}", _SPOOL_GAUGES[name], value=value)
            else:  # evicted_verdicts, evicted_heatmaps, undurable, lost: they only grow
                yield CounterMetricFamily(
                    f"{PREFIX}_spool_{name}", f"spool messages {name.replace('_', ' ')}", value=value
                )
        yield GaugeMetricFamily(
            f"{PREFIX}_broker_connected", "1 while the broker connection is up", value=status.broker_connected
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_uptime_seconds", "seconds since the agent started", value=status.uptime_s or 0.0
        )
        cameras = GaugeMetricFamily(
            f"{PREFIX}_camera_state", "1 for the state each camera is in, 0 for the others", labels=["camera", "state"]
        )
        for camera in status.cameras:
            for state in CameraState:
                cameras.add_metric([camera.name, state.value], float(camera.state is state))
        yield cameras
        if status.model is not None:
            model = status.model
            info = {"name": model.name, "version": model.version, "sha256": model.sha256}
            info |= {"backend": model.backend, "precision": model.precision}
            yield InfoMetricFamily(f"{PREFIX}_model", "the model running", value=info)


class AgentMetrics:
    """The agent's registry (served at ``GET /metrics`` by :mod:`edge_inspector.web`) and the stage histogram.

    Args:
        status: the agent's status now (read at every scrape).
    """

    def __init__(self, status: Callable[[], Status]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(status))
        self._stages = Histogram(
            f"{PREFIX}_stage_seconds",
            "where a frame's time went, by stage (total: capture to verdict)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )

    def observe(self, latency: Latency) -> None:
        """Count one verdict's stage times."""
        for stage, ms in (
            ("preprocess", latency.preprocess_ms),
            ("inference", latency.inference_ms),
            ("postprocess", latency.postprocess_ms),
            ("total", latency.total_ms),
        ):
            self._stages.labels(stage).observe(ms / 1000.0)
