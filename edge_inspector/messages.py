"""Contract 2: the MQTT messages, versioned pydantic models.

Topics under ``{prefix}/{station}``, one set per station whatever the number
of cameras (each verdict names its camera; ``seq`` is one sequence per
station): ``status`` (retained), ``verdict``, ``heatmap`` (JPEG bytes; MQTT
v5 properties carry content type and the ``seq`` of its verdict, which names
the camera), ``cmd/trigger`` and ``cmd/reload`` (inbound, when enabled).
``edge-inspector schema`` prints the JSON Schemas for MES integrators.

Schema version 3: ``Status.verdicts`` counts verdicts by label (version 2
had them among ``Status.counters`` as ``verdicts.<label>``). Version 2 (several
cameras): ``Status.cameras`` replaces ``Status.camera``,
``Status.reload_error`` moves to the top level, and ``Trigger.camera`` picks
the camera a trigger is for.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONTENT_TYPES",
    "SCHEMA_VERSION",
    "CameraState",
    "CameraStatus",
    "CaptureMode",
    "InspectResult",
    "Latency",
    "ModelRef",
    "Status",
    "Trigger",
    "Verdict",
    "message_schemas",
    "topic_root",
    "topics",
]

SCHEMA_VERSION = 3


class CaptureMode(str, Enum):
    """Free-running keeps the newest frame; triggered inspects one frame per ``cmd/trigger``."""

    FREE_RUNNING = "free-running"
    TRIGGERED = "triggered"


class CameraState(str, Enum):
    """What a camera is doing."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    STOPPED = "stopped"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Message):
    """Which model produced a verdict."""

    name: str
    version: str
    sha256: str = Field(description="sha256 of the model file that ran")
    backend: str
    precision: str


class Latency(_Message):
    """Where the time went, in milliseconds."""

    preprocess_ms: float
    inference_ms: float = Field(description="the batch's inference time (shared by the frames of a micro-batch)")
    postprocess_ms: float
    total_ms: float = Field(description="capture to verdict")
    batch: int = Field(ge=1, description="frames inferred together")


class Verdict(_Message):
    """The inspection result of one frame (topic ``verdict``, QoS 1)."""

    schema_version: Literal[2, 3] = Field(
        SCHEMA_VERSION,
        description="3; 2 in a verdict an agent of schema version 2 spooled and its upgrade sent (same fields)",
    )
    station: str
    camera: str = Field(description="the camera's name (cameras[].name in the agent's config)")
    seq: int = Field(
        ge=0,
        description="from 1, monotonic per station, survives restarts; use it to drop duplicates. "
        "0 in the answer to POST /inspect, which is not published",
    )
    part_id: str | None = Field(None, description="from cmd/trigger in triggered mode")
    captured_at: datetime = Field(description="UTC, ISO 8601")
    label: str
    is_defect: bool
    score: float = Field(ge=0, le=1, description="P(defect) = 1 - P(ok class)")
    confidence: float = Field(ge=0, le=1, description="probability of the predicted label")
    probabilities: dict[str, float]
    threshold: float
    model: ModelRef
    latency: Latency
    heatmap: bool = Field(
        description="whether a heatmap with this seq is published on the heatmap topic (POST /inspect: inline)"
    )


class CameraStatus(_Message):
    """One camera in ``status``."""

    name: str
    source: str = Field(description="with any URL credentials hidden")
    mode: CaptureMode
    state: CameraState | None = Field(None, description="null in the last will")
    state_for_s: float | None = Field(None, description="seconds in this state; null in the last will")
    counters: dict[str, int] = Field(
        default_factory=dict, description="captured, skipped, dropped, undecodable, reconnects"
    )


class Status(_Message):
    """Agent health (topic ``status``, QoS 1, retained; the broker publishes ``offline`` as last will)."""

    schema_version: Literal[3] = SCHEMA_VERSION
    station: str
    state: Literal["online", "offline"]
    at: datetime
    model: ModelRef | None = None
    cameras: list[CameraStatus] = Field(default_factory=list)
    reload_error: str | None = Field(None, description="why the last cmd/reload or SIGHUP was refused")
    uptime_s: float | None = Field(
        0.0, description="seconds since start; null in the last will, which the broker sends long after it was set"
    )
    counters: dict[str, int] = Field(default_factory=dict, description="the agent's, and the cameras' summed")
    verdicts: dict[str, int] = Field(default_factory=dict, description="verdicts since start, by label")
    spool: dict[str, int] = Field(default_factory=dict)
    broker_connected: bool = True


class Trigger(_Message):
    """Inbound ``cmd/trigger``: inspect the next frame for this part."""

    part_id: str = Field(min_length=1, max_length=200)
    camera: str | None = Field(
        None, description="the triggered camera to take it; null: every triggered camera (one board, several views)"
    )


class InspectResult(_Message):
    """The answer to ``POST /inspect``: the verdict MQTT would carry for these pixels, and its heatmap."""

    verdict: Verdict
    heatmap_jpeg: str | None = Field(None, description="base64 JPEG: the image with the label's activation map")


CONTENT_TYPES = {"status": "application/json", "verdict": "application/json", "heatmap": "image/jpeg"}


def topic_root(prefix: str, station: str) -> str:
    """``{prefix}/{station}``: every topic of a station lies under it."""
    return f"{prefix}/{station}"


def topics(prefix: str, station: str) -> dict[str, str]:
    """Every topic of a station."""
    root = topic_root(prefix, station)
    return {
        "status": f"{root}/status",
        "verdict": f"{root}/verdict",
        "heatmap": f"{root}/heatmap",
        "trigger": f"{root}/cmd/trigger",
        "reload": f"{root}/cmd/reload",
        # never subscribed: the sender unsubscribes from it as a delivery barrier (no message goes there)
        "barrier": f"{root}/cmd/barrier",
    }


def message_schemas() -> dict[str, Any]:
    """JSON Schemas of the messages, by name."""
    return {model.__name__: model.model_json_schema() for model in (Verdict, Status, Trigger, InspectResult)}
