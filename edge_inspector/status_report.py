"""The agent's ``status``: what each camera, the model, the spool and the broker are doing, and its metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from edge_inspector.capture import Camera
from edge_inspector.config import AgentConfig, CameraConfig
from edge_inspector.counters import Counters
from edge_inspector.messages import CameraState, CameraStatus, ModelRef, Status
from edge_inspector.outbox.publisher import Publisher
from edge_inspector.outbox.spool import Spool

__all__ = ["build_status", "last_will", "redact"]


def redact(source: str | int) -> str:
    """A camera source with any URL credentials hidden."""
    return re.sub(r"(://)[^/@]+@", r"\1***@", str(source))


def _camera_status(config: CameraConfig, camera: Camera | None, now: float) -> CameraStatus:
    return CameraStatus(
        name=config.name,
        source=redact(config.source),
        mode=config.mode,
        state=camera.state if camera else CameraState.CONNECTING,
        state_for_s=round(now - camera.state_since, 1) if camera else 0.0,
        counters=camera.counters.snapshot() if camera else {},
    )


def build_status(
    config: AgentConfig,
    state: str,
    *,
    cameras: Sequence[Camera],
    counters: Counters,
    model: ModelRef | None,
    reload_error: str | None,
    spool: Spool | None,
    publisher: Publisher | None,
) -> Status:
    """The station's status now; the agent's counters summed with every camera's."""
    now = time.monotonic()
    started = {camera.config.name: camera for camera in cameras}
    camera_states = [_camera_status(c, started.get(c.name), now) for c in config.cameras]
    totals = counters.snapshot()
    for camera in camera_states:
        for name, value in camera.counters.items():
            totals[name] = totals.get(name, 0) + value
    spooled: dict[str, int] = {}
    if spool is not None:
        spooled = {**spool.depth(), **{f"evicted_{k}": v for k, v in spool.evictions().items()}}
    if publisher is not None:  # a full disk: what went out without durability, or not at all
        stats = publisher.stats()
        spooled.update(disk_full=int(publisher.disk_full), undurable=stats["undurable"], lost=stats["lost"])
    return Status(
        station=config.station,
        state=state,  # type: ignore[arg-type]
        at=datetime.now(timezone.utc),
        model=model,
        cameras=camera_states,
        reload_error=reload_error,
        uptime_s=round(counters.uptime(), 1),
        counters=totals,
        verdicts=counters.verdicts(),
        spool=spooled,
        broker_connected=bool(publisher and publisher.connected),
    )


def last_will(config: AgentConfig, model: ModelRef | None) -> bytes:
    """The ``offline`` status the broker publishes if the agent vanishes: who, with which model; nothing that ages."""
    will = Status(
        station=config.station,
        state="offline",
        at=datetime.now(timezone.utc),
        model=model,
        cameras=[CameraStatus(name=c.name, source=redact(c.source), mode=c.mode) for c in config.cameras],
        uptime_s=None,
        broker_connected=False,
    )
    return will.model_dump_json().encode()
