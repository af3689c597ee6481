"""The agent's HTTP side as the inspection loop sees it: the server, answers to posted images, the live feed."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timezone

import numpy as np

from edge_inspector.capture.mailbox import Frame, FrameMailbox
from edge_inspector.config import HTTP_CAMERA, AgentConfig
from edge_inspector.counters import Counters
from edge_inspector.inspector import HeatmapRule, Inspection, Inspector
from edge_inspector.messages import InspectResult, Status, Verdict
from edge_inspector.metrics import AgentMetrics
from edge_inspector.web.app import AgentHooks, build_app
from edge_inspector.web.feed import LiveFeed
from edge_inspector.web.server import HttpServer

__all__ = ["WebFront"]


class WebFront:
    """Serves one agent over HTTP (``http.port``) beside its inspection loop.

    Posted images join the camera frames in ``mailbox`` under the camera name
    ``http``, so one model and one code path inspect both. Everything about
    them is decided here: they always draw a heatmap (:meth:`heatmap_rule`),
    those whose client gave up are not inferred (:meth:`waited_for`), their
    errors (:meth:`failed`) and inspections (:meth:`answer`) go back to the
    client instead of the spool.
    """

    def __init__(
        self,
        config: AgentConfig,
        mailbox: FrameMailbox,
        status: Callable[[], Status],
        counters: Counters,
        stopping: threading.Event,
    ) -> None:
        settings = config.http
        assert settings.port is not None
        self.station = config.station
        self.feed = LiveFeed()
        self.metrics = AgentMetrics(status)
        self._counters = counters
        self._mailbox = mailbox
        self._uploads = 0
        self._lock = threading.Lock()
        mailbox.open(HTTP_CAMERA, latest=False, capacity=settings.max_pending)
        hooks = AgentHooks(
            status=status, submit=self.submit, feed=self.feed, registry=self.metrics.registry, stopping=stopping
        )
        self._server = HttpServer(build_app(hooks, settings), settings.host, settings.port)

    def start(self) -> None:
        """Listen (raises ConfigError when the port cannot be bound)."""
        self._server.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.close(timeout=2.0)

    def submit(self, image: np.ndarray) -> Future[InspectResult] | None:
        """Queue a posted image (RGB) for the model; None when ``http.max_pending`` already wait."""
        with self._lock:
            self._uploads += 1
            index = self._uploads
        frame = Frame(image, datetime.now(timezone.utc), index, HTTP_CAMERA, reply=Future())
        return frame.reply if self._mailbox.offer(frame) else None

    @staticmethod
    def heatmap_rule(rule: HeatmapRule) -> HeatmapRule:
        """``rule``, except that a posted image always gets its heatmap (the answer carries it)."""
        return lambda frame, is_defect: frame.reply is not None or rule(frame, is_defect)

    @staticmethod
    def waited_for(frames: list[Frame]) -> list[Frame]:
        """``frames`` without the posted images whose client gave up waiting (``http.timeout_s``)."""
        return [f for f in frames if f.reply is None or not f.reply.cancelled()]

    @staticmethod
    def failed(frame: Frame, error: Exception) -> None:
        """A frame could not be inspected: a posted image's client gets the error (answered 422)."""
        if frame.reply is not None and frame.reply.set_running_or_notify_cancel():
            frame.reply.set_exception(error)

    def answer(self, inspector: Inspector, inspections: list[Inspection]) -> list[Inspection]:
        """Answer the posted images among ``inspections`` (``seq`` 0: not published); returns the cameras'."""
        from_cameras = []
        for item in inspections:
            reply = item.frame.reply
            if reply is None:
                from_cameras.append(item)
                continue
            self._counters.add("http_inspections")
            verdict = inspector.verdict(item, station=self.station, seq=0, heatmap=False)
            heatmap = base64.b64encode(item.heatmap_jpeg).decode() if item.heatmap_jpeg is not None else None
            if reply.set_running_or_notify_cancel():  # False: the client gave up (http.timeout_s)
                reply.set_result(InspectResult(verdict=verdict, heatmap_jpeg=heatmap))
        return from_cameras

    def published(self, inspector: Inspector, item: Inspection, verdict: Verdict) -> None:
        """A verdict just spooled for MQTT: its stage times to the histogram, itself to the live view (its picture
        is drawn only when a browser asks for it)."""
        self.metrics.observe(item.latency)
        drawn = item.heatmap_jpeg
        self.feed.add(
            verdict.model_dump(mode="json"),
            lambda: drawn if drawn is not None else inspector.heatmap_jpeg(item.roi_image, item.activation),
        )
