"""Frames on their way from the cameras to inference, and the mailbox that hands them over."""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from edge_inspector.messages import InspectResult
from edge_inspector.preprocess import ModelInput

__all__ = ["Frame", "FrameMailbox"]


@dataclass
class Frame:
    """One captured frame (RGB), when it was grabbed and where it came from."""

    image: np.ndarray
    captured_at: datetime
    index: int
    camera: str = "cam0"
    part_id: str | None = None
    monotonic: float = field(default_factory=time.monotonic)
    prepared: ModelInput | None = None
    reply: Future[InspectResult] | None = field(default=None, compare=False)
    """An image sent to ``POST /inspect``: its inspection is answered here and not published."""


class FrameMailbox:
    """Hand-over between the capture threads and inference: one slot per camera.

    A camera's slot either holds its newest frame and replaces it (``latest``,
    counting a drop) or queues up to ``capacity`` frames and blocks the
    capture thread when full (never drops). :meth:`take` gives inference what
    is waiting, one frame per camera in turn, so frames of several cameras
    are inferred as one micro-batch and no camera starves the others.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, deque[Frame]] = {}
        self._latest: dict[str, bool] = {}
        self._capacity: dict[str, int] = {}
        self._turn = 0

    def open(self, camera: str, *, latest: bool, capacity: int = 1) -> None:
        """Give a camera its slot."""
        with self._cond:
            self._slots[camera] = deque()
            self._latest[camera] = latest
            self._capacity[camera] = 1 if latest else max(1, capacity)

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        """Hand a frame on; returns True when an unread frame was dropped for it."""
        with self._cond:
            slot = self._slots[frame.camera]
            dropped = False
            if self._latest[frame.camera]:
                dropped = bool(slot)
                slot.clear()
            else:
                while len(slot) >= self._capacity[frame.camera]:
                    if stop.is_set():
                        return False
                    self._cond.wait(0.2)
            slot.append(frame)
            self._cond.notify_all()
            return dropped

    def offer(self, frame: Frame) -> bool:
        """Queue a frame without waiting; False when its camera's slot is full."""
        with self._cond:
            slot = self._slots[frame.camera]
            if len(slot) >= self._capacity[frame.camera]:
                return False
            slot.append(frame)
            self._cond.notify_all()
            return True

    def take(self, limit: int, timeout: float) -> list[Frame]:
        """Up to ``limit`` waiting frames, round robin over the cameras; [] after ``timeout`` s with none."""
        with self._cond:
            if not self._cond.wait_for(self._any, timeout):
                return []
            names = list(self._slots)
            start, self._turn = self._turn % len(names), self._turn + 1
            order = names[start:] + names[:start]
            frames: list[Frame] = []
            while len(frames) < limit and self._any():
                for name in order:
                    if self._slots[name] and len(frames) < limit:
                        frames.append(self._slots[name].popleft())
            self._cond.notify_all()  # room for blocked capture threads
            return frames

    def waiting(self, camera: str | None = None) -> int:
        """Frames waiting, for one camera or all."""
        with self._cond:
            if camera is not None:
                return len(self._slots[camera])
            return sum(len(slot) for slot in self._slots.values())

    def _any(self) -> bool:
        return any(self._slots.values())
