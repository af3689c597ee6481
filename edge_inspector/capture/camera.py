"""Frames from OpenCV: device, file, RTSP/HTTP stream, GStreamer pipeline or image folder.

A :class:`Camera` thread reads frames and hands them on; a lost source is
reopened with exponential backoff.

A live source (camera device, RTSP/HTTP stream, GStreamer pipeline) pushes
frames whether we read them or not, and buffers what we leave. So the thread
drains it continuously with ``grab()``, timestamps each frame when it is
grabbed, and decodes (``retrieve()``) only the frames that will be
inspected: in free-running mode the newest frame once one is due (at most
``fps`` a second) and the inspector has taken the previous one; in triggered
mode the first frame grabbed at least ``trigger_delay_ms`` after the trigger
arrived, never a frame buffered before it. Frames grabbed and not inspected
are counted as ``skipped``.

Files and image folders are read in order instead and every frame is
inspected (a recording is replayed, never skipped): at most ``fps`` a
second in free-running mode, the reader waiting while the inspector is
behind, and one frame per trigger in triggered mode.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import cv2
import numpy as np

from edge_inspector.capture.mailbox import Frame, FrameMailbox
from edge_inspector.capture.sources import FolderSource, is_file, open_source
from edge_inspector.capture.triggers import TriggerRequest
from edge_inspector.config import CameraConfig
from edge_inspector.counters import Counters
from edge_inspector.messages import CameraState, CaptureMode
from edge_inspector.priority import lower_thread_priority

__all__ = ["Camera"]

log = logging.getLogger(__name__)

FILE_READ_AHEAD = 1  # frames of a file or folder waiting, decoded, for inference (the reader holds one more)
TRIGGERED_BACKLOG = 64  # triggered frames waiting for inference before capture waits too


class Camera(threading.Thread):
    """One camera's capture thread: reads frames into its slot of a :class:`FrameMailbox`.

    ``prepare``, when given, turns each decoded frame into the model's input
    here, beside inference; a frame it refuses (ValueError) is counted in
    ``failed_frames`` and not handed on.
    """

    def __init__(
        self,
        config: CameraConfig,
        mailbox: FrameMailbox,
        stop: threading.Event,
        triggers: queue.Queue[TriggerRequest] | None = None,
        on_state: Callable[[CameraState], None] | None = None,
        prepare: Callable[[Frame], Frame] | None = None,
    ) -> None:
        super().__init__(name=f"capture-{config.name}", daemon=True)
        self.prepare = prepare
        self._prepare_error: str | None = None
        self.config = config
        self.mailbox = mailbox
        self.stop_event = stop
        self.triggers = triggers
        self.on_state = on_state
        self.counters = Counters(("captured", "skipped", "dropped", "undecodable", "failed_frames", "reconnects"))
        self.state = CameraState.CONNECTING
        self.state_since = time.monotonic()
        self._heartbeat = time.monotonic()
        self._index = 0
        self._finite = is_file(config.source)
        live_free_running = not self._finite and config.mode is CaptureMode.FREE_RUNNING
        backlog = TRIGGERED_BACKLOG if config.mode is CaptureMode.TRIGGERED else FILE_READ_AHEAD
        mailbox.open(config.name, latest=live_free_running, capacity=backlog)

    def beat(self) -> None:
        """Mark the thread as making progress (every frame, every wait step)."""
        self._heartbeat = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds since the capture thread last made progress: large means it hangs (in a read)."""
        return time.monotonic() - self._heartbeat

    def _wait(self, seconds: float) -> bool:
        """Wait, beating at least once a second; True when stopping."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop_event.wait(min(left, 1.0)):
                return True
            self.beat()
        return self.stop_event.is_set()

    def _set_state(self, state: CameraState) -> None:
        if state is not self.state:
            log.info("camera %s: %s", self.config.name, state.value)
            self.state_since = time.monotonic()
        self.state = state
        if self.on_state:
            self.on_state(state)

    def _open(self) -> cv2.VideoCapture | FolderSource | None:
        delay = self.config.reconnect_initial_s
        while not self.stop_event.is_set():
            capture = open_source(self.config.source)
            if capture.isOpened():
                self._set_state(CameraState.STREAMING)
                return capture
            capture.release()
            log.warning("camera %s: cannot open source; retrying in %.1f s", self.config.name, delay)
            if self._wait(delay):
                break
            delay = min(delay * 2, self.config.reconnect_max_s)
        return None

    def _next_part(self) -> tuple[bool, TriggerRequest | None]:
        """Triggered mode: wait for a trigger (False when stopping)."""
        assert self.triggers is not None
        while not self.stop_event.is_set():
            self.beat()
            try:
                return True, self.triggers.get(timeout=0.2)
            except queue.Empty:
                continue
        return False, None

    def run(self) -> None:
        lower_thread_priority()
        triggered = self.config.mode is CaptureMode.TRIGGERED
        period = 1.0 / self.config.fps
        try:
            while not self.stop_event.is_set():
                capture = self._open()
                if capture is None:
                    break
                if self._finite:
                    ended = self._read_in_order(capture, triggered, period)
                else:
                    ended = self._drain_live(capture, triggered, period)
                capture.release()
                if ended:
                    if self.config.loop:
                        continue
                    self._set_state(CameraState.ENDED)
                    break
                if not self.stop_event.is_set():
                    self.counters.add("reconnects")
                    self._set_state(CameraState.RECONNECTING)
        finally:
            if self.state is not CameraState.ENDED:
                self._set_state(CameraState.STOPPED)

    def _read_in_order(self, capture: cv2.VideoCapture | FolderSource, triggered: bool, period: float) -> bool:
        """A file or folder: read until it ends (True) or fails."""
        next_due = time.monotonic()
        while not self.stop_event.is_set():
            trigger = None
            if triggered:
                ok, trigger = self._next_part()
                if not ok:
                    return False
            else:
                wait = next_due - time.monotonic()
                if wait > 0 and self._wait(wait):
                    return False
                next_due = max(next_due + period, time.monotonic())
            self.beat()
            grabbed_at, grabbed_wall = time.monotonic(), datetime.now(timezone.utc)
            ok, image = capture.read()
            if not ok:
                if trigger is not None:
                    self.triggers.put(trigger)  # type: ignore[union-attr]  # not lost: served after a loop
                return True
            self._deliver(image, grabbed_at, grabbed_wall, trigger)
        return False

    def _drain_live(self, capture: cv2.VideoCapture, triggered: bool, period: float) -> bool:
        """A live source: grab every frame it pushes, decode only those to inspect; False when it fails."""
        pending: list[TriggerRequest] = []
        delay = self.config.trigger_delay_ms / 1000.0
        next_due = time.monotonic()
        while not self.stop_event.is_set():
            self.beat()
            if not capture.grab():
                log.warning("camera %s: read failed; reconnecting", self.config.name)
                if pending:  # not lost: served after the reconnect
                    for trigger in pending:
                        self.triggers.put(trigger)  # type: ignore[union-attr]
                return False
            grabbed_at, grabbed_wall = time.monotonic(), datetime.now(timezone.utc)
            if triggered:
                pending += _drain(self.triggers)
                trigger = pending.pop(0) if pending and grabbed_at >= pending[0].at + delay else None
                wanted = trigger is not None
            else:
                trigger = None
                wanted = grabbed_at >= next_due and self.mailbox.waiting(self.config.name) == 0
            if not wanted:
                self._index += 1
                self.counters.add("captured")
                self.counters.add("skipped")
                continue
            if not triggered:
                next_due = max(next_due + period, grabbed_at)
            ok, image = capture.retrieve()
            self._deliver(image if ok else None, grabbed_at, grabbed_wall, trigger)
        return False

    def _deliver(
        self, image: np.ndarray | None, grabbed_at: float, grabbed_wall: datetime, trigger: TriggerRequest | None
    ) -> None:
        """Hand a decoded frame to the inspector, or count it undecodable."""
        self._index += 1
        if image is None or image.size == 0:
            self.counters.add("undecodable")
            log.warning("camera %s: frame %d could not be decoded; skipped", self.config.name, self._index)
            if trigger is not None:  # the part is still waiting: the next frame serves it
                self.triggers.put(trigger)  # type: ignore[union-attr]
            return
        self.counters.add("captured")
        part_id = trigger.part_id if trigger is not None else None
        frame = Frame(_to_rgb(image), grabbed_wall, self._index, self.config.name, part_id, monotonic=grabbed_at)
        if self.prepare is not None:
            try:
                frame = self.prepare(frame)
            except ValueError as exc:  # e.g. an ROI outside a frame of unexpected size
                self.counters.add("failed_frames")
                if str(exc) != self._prepare_error:  # once per kind of failure, not per frame
                    self._prepare_error = str(exc)
                    log.error("camera %s: frames cannot be inspected: %s", self.config.name, exc)
                if part_id is not None:
                    log.error("camera %s: part %s gets no verdict: %s", self.config.name, part_id, exc)
                return
            self._prepare_error = None
        if self.mailbox.put(frame, self.stop_event):
            self.counters.add("dropped")


def _drain(triggers: queue.Queue[TriggerRequest] | None) -> list[TriggerRequest]:
    """Every trigger waiting, oldest first."""
    found: list[TriggerRequest] = []
    while triggers is not None:
        try:
            found.append(triggers.get_nowait())
        except queue.Empty:
            break
    return found


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
