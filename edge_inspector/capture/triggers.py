"""``cmd/trigger`` on its way to the triggered cameras: a queue per camera, and the routing between."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_inspector.config import CameraConfig
from edge_inspector.messages import CaptureMode, Trigger

__all__ = ["TriggerRequest", "Triggers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerRequest:
    """A part to inspect, and when its trigger arrived (``time.monotonic``)."""

    part_id: str
    at: float = field(default_factory=time.monotonic)


class Triggers:
    """One queue per triggered camera of ``cameras``; the capture threads take from them."""

    def __init__(self, cameras: Sequence[CameraConfig]) -> None:
        self._queues: dict[str, queue.Queue[TriggerRequest]] = {
            camera.name: queue.Queue() for camera in cameras if camera.mode is CaptureMode.TRIGGERED
        }

    def queue(self, camera: str) -> queue.Queue[TriggerRequest] | None:
        """The queue of a triggered camera; None for a free-running one."""
        return self._queues.get(camera)

    def route(self, trigger: Trigger) -> bool:
        """Queue a trigger for the triggered camera it names, or for each when it names none; False (logged) if
        no triggered camera takes it."""
        if trigger.camera is None:
            targets = list(self._queues.values())
        else:
            targets = [self._queues[trigger.camera]] if trigger.camera in self._queues else []
        if not targets:
            log.warning(
                "ignoring trigger for part %r: no triggered camera %s (triggered: %s)",
                trigger.part_id,
                repr(trigger.camera) if trigger.camera else "",
                ", ".join(self._queues) or "none",
            )
            return False
        at = time.monotonic()
        for target in targets:
            target.put(TriggerRequest(trigger.part_id, at))
        return True
