"""The agent's configuration: one YAML file, a tree of pydantic models.

Loaded once at start-up and passed down. Unknown keys are refused. An
environment variable ``EDGE_INSPECTOR__SECTION__FIELD`` overrides a field
(``EDGE_INSPECTOR__MQTT__HOST=broker.local``; a camera of the list by its
index, ``EDGE_INSPECTOR__CAMERAS__0__SOURCE``); values are parsed as YAML
scalars. The MQTT password comes from ``mqtt.password_file`` or the
``EDGE_INSPECTOR_MQTT_PASSWORD`` variable, never from the YAML file itself,
and is never logged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from edge_inspector.backends.base import BackendKind
from edge_inspector.bundle import Precision
from edge_inspector.errors import ConfigError, validation_problems
from edge_inspector.messages import CaptureMode

__all__ = [
    "ENV_PREFIX",
    "HTTP_CAMERA",
    "PASSWORD_ENV",
    "AgentConfig",
    "CameraConfig",
    "HealthConfig",
    "HeatmapPolicy",
    "HttpConfig",
    "ModelConfig",
    "MqttConfig",
    "SamplesConfig",
    "SpoolConfig",
    "TlsConfig",
    "load_config",
]

ENV_PREFIX = "EDGE_INSPECTOR__"
PASSWORD_ENV = "EDGE_INSPECTOR_MQTT_PASSWORD"
HTTP_CAMERA = "http"


class HeatmapPolicy(str, Enum):
    """Which verdicts get a heatmap image on the ``heatmap`` topic."""

    ALWAYS = "always"
    DEFECTS = "defects"
    NEVER = "never"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Section):
    """Where frames come from and how they are taken."""

    source: str | int = Field(
        description="device index (0), video file, rtsp:// or http:// URL, GStreamer pipeline (with 'appsink'), "
        "or a folder of images"
    )
    name: str = Field("cam0", pattern=r"^[A-Za-z0-9_.-]+$", description="in verdicts and status")
    mode: CaptureMode = CaptureMode.FREE_RUNNING
    fps: float = Field(5.0, gt=0, description="free-running: most frames per second to inspect")
    roi: tuple[int, int, int, int] | None = Field(None, description="x, y, width, height cut before resizing")
    loop: bool = Field(False, description="files and folders: start again at the end (demos, soak tests)")
    trigger_delay_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="triggered, live sources: inspect the first frame grabbed this long after "
        "the trigger arrived (conveyor settling)",
    )
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, roi: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if roi is not None and (roi[0] < 0 or roi[1] < 0 or roi[2] <= 0 or roi[3] <= 0):
            raise ValueError("roi is x, y, width, height with x, y >= 0 and width, height > 0")
        return roi


class ModelConfig(_Section):
    """Which bundle runs where."""

    bundle: Path
    backend: BackendKind = BackendKind.AUTO
    precision: Precision = Precision.INT8
    device: str = Field("auto", description="auto | cpu | cuda | tensorrt (onnxruntime) | CPU/GPU (openvino)")
    threads: int | None = Field(
        None, ge=1, description="CPU inference threads; default: all cores but one (for capture, heatmaps, MQTT)"
    )
    max_batch: int = Field(4, ge=1, le=64, description="micro-batch: frames inferred together when queued")
    threshold: float | None = Field(None, gt=0, lt=1, description="defect threshold; default: the bundle's")


class TlsConfig(_Section):
    """TLS to the broker: a CA file, optionally a client certificate."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip host name checks (test benches only)")


class MqttConfig(_Section):
    """The broker and how messages are published."""

    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, description="default: edge-inspector-<station>")
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5)
    username: str | None = None
    password_file: Path | None = None
    password: SecretStr | None = Field(None, exclude=True, description="filled from password_file or the environment")
    tls: TlsConfig | None = None
    prefix: str = "edge-inspector"
    qos: Literal[0, 1, 2] = 1
    heatmap: HeatmapPolicy = HeatmapPolicy.DEFECTS
    heatmap_qos: Literal[0, 1, 2] = 0
    commands: bool = Field(False, description="accept cmd/trigger and cmd/reload")
    max_inflight: int = Field(20, ge=1)
    format: Literal["json", "sparkplug"] = Field(
        "json", description="sparkplug: verdicts as Sparkplug B DDATA (spBv1.0); heatmaps stay on the heatmap topic"
    )
    sparkplug_group: str = Field("edge-inspector", pattern=r"^[^/+#]+$", description="Sparkplug B group_id")

    @field_validator("prefix")
    @classmethod
    def _no_wildcards(cls, prefix: str) -> str:
        if not prefix or any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("prefix must be a plain topic path without wildcards or leading/trailing '/'")
        return prefix


class SpoolConfig(_Section):
    """The store-and-forward queue on disk."""

    path: Path = Path("/var/lib/edge-inspector/spool.sqlite")
    max_mb: float = Field(256.0, gt=0, description="heatmaps are evicted first when full, then oldest verdicts")


class SamplesConfig(_Section):
    """Frames kept for engineers to label: the loop back to the trainer."""

    folder: Path | None = Field(None, description="saved as <folder>/<predicted class>/<time>_<seq>.png")
    defects: bool = True
    low_confidence: float | None = Field(None, gt=0, lt=1, description="also keep frames under this confidence")
    max_files: int = Field(2000, ge=1)


class HealthConfig(_Section):
    """Status publishing and the systemd watchdog."""

    status_interval_s: float = Field(30.0, gt=0)
    stall_after_s: float = Field(30.0, gt=0, description="no frame through inference for this long = unhealthy")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, values: Any) -> Any:
        if isinstance(values, dict) and "prometheus_port" in values:
            raise ValueError("prometheus_port has moved: set http.port, which serves GET /metrics beside the API")
        return values


class HttpConfig(_Section):
    """The HTTP API (POST /inspect, GET /status), the live view at / and GET /metrics, on one port."""

    port: int | None = Field(None, ge=1, le=65535, description="off when null")
    host: str = Field("127.0.0.1", description="0.0.0.0 to reach it from other machines")
    token_file: Path | None = Field(None, description="POST needs 'Authorization: Bearer <the file's content>'")
    token: SecretStr | None = Field(None, exclude=True, description="filled from token_file")
    max_upload_mb: float = Field(16.0, gt=0, le=512, description="larger uploads get 413")
    max_pending: int = Field(4, ge=1, le=256, description="uploads waiting for the model; more get 503")
    timeout_s: float = Field(10.0, gt=0, description="an upload not inspected by then gets 504")


class AgentConfig(_Section):
    """The whole agent."""

    station: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="station id, part of every topic")
    cameras: list[CameraConfig] = Field(
        min_length=1, max_length=16, description="one model serves them all; a single `camera:` section also works"
    )
    model: ModelConfig
    mqtt: MqttConfig = MqttConfig()
    spool: SpoolConfig = SpoolConfig()
    samples: SamplesConfig = SamplesConfig()
    health: HealthConfig = HealthConfig()
    http: HttpConfig = HttpConfig()
    drain_timeout_s: float = Field(10.0, gt=0, description="SIGTERM: time to finish queued frames and flush")

    @model_validator(mode="before")
    @classmethod
    def _one_camera(cls, values: Any) -> Any:
        """``camera: {...}`` is the one-camera spelling of ``cameras: [{...}]``."""
        if isinstance(values, dict) and "camera" in values:
            if "cameras" in values:
                raise ValueError("give either camera (one) or cameras (a list), not both")
            values = {**values, "cameras": [values["camera"]]}
            del values["camera"]
        return values

    @model_validator(mode="after")
    def _relations(self) -> AgentConfig:
        names = [camera.name for camera in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"cameras: every camera needs its own name (got {names}); verdicts carry it")
        if HTTP_CAMERA in names:
            raise ValueError(f"cameras: {HTTP_CAMERA!r} is the name of images sent to POST /inspect; pick another")
        if any(c.mode is CaptureMode.TRIGGERED for c in self.cameras) and not self.mqtt.commands:
            raise ValueError("a triggered camera needs mqtt.commands: true (triggers arrive on cmd/trigger)")
        return self


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw else raw
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; a list item is addressed by its index (``CAMERAS__1__FPS``)."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = _merge(current, value)
        elif isinstance(value, dict) and isinstance(current, list) and all(k.isdigit() for k in value):
            items = list(current)
            for index, item in value.items():
                if int(index) >= len(items) or not isinstance(items[int(index)], dict):
                    raise ConfigError(f"{ENV_PREFIX}{key.upper()}__{index}__...: there is no {key}[{index}]")
                items[int(index)] = _merge(items[int(index)], item)
            merged[key] = items
        else:
            merged[key] = value
    return merged


def _password(mqtt: dict[str, Any], environ: dict[str, str], source: str) -> str | None:
    if "password" in mqtt:
        raise ConfigError(
            f"{source}: mqtt.password is not read from the file; use mqtt.password_file or ${PASSWORD_ENV}"
        )
    if mqtt.get("password_file"):
        path = Path(mqtt["password_file"])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{source}: mqtt.password_file: cannot read {path} ({exc.strerror})") from exc
    return environ.get(PASSWORD_ENV)


def _token(http: dict[str, Any], source: str) -> str | None:
    if "token" in http:
        raise ConfigError(f"{source}: http.token is not read from the file; use http.token_file")
    if not http.get("token_file"):
        return None
    path = Path(http["token_file"])
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{source}: http.token_file: cannot read {path} ({exc.strerror})") from exc
    if not token:
        raise ConfigError(f"{source}: http.token_file: {path} is empty")
    return token


def load_config(path: Path, environ: dict[str, str] | None = None) -> AgentConfig:
    """Read, merge environment overrides and validate the agent's config.

    Raises:
        ConfigError: one line naming the file and the field at fault.
    """
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    values = _merge(raw, _env_overrides(environ))
    mqtt = dict(values.get("mqtt") or {})
    password = _password(mqtt, environ, str(path))
    if password is not None:
        mqtt["password"] = password
    values["mqtt"] = mqtt
    http = dict(values.get("http") or {})
    token = _token(http, str(path))
    if token is not None:
        http["token"] = token
    values["http"] = http
    try:
        return AgentConfig.model_validate(values)
    except ValidationError as exc:
        single = "camera" in values and "cameras" not in values
        raise ConfigError(f"{path}: {validation_problems(exc, field=lambda loc: _field(loc, single))}") from exc


def _field(loc: Sequence[int | str], single_camera: bool) -> str:
    """A field's dotted path as the user wrote it: ``camera.fps`` in a one-camera file, not ``cameras.0.fps``."""
    if single_camera and tuple(loc[:2]) == ("cameras", 0):
        loc = ("camera", *loc[2:])
    return ".".join(str(part) for part in loc)
