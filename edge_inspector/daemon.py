"""The agent: cameras -> inference -> spool -> MQTT, until SIGTERM.

A pipeline, each step on its own thread so that none waits for another:

- one capture thread per camera (``Camera``) decodes the frames to inspect
  and prepares them for the model (ROI, resize, crop);
- this module's main loop runs one model on the frames of every camera in
  micro-batches, publishes status, pings the systemd watchdog while frames
  move, and swaps bundles on SIGHUP or ``cmd/reload``;
- the output stage (``Stage``) turns each inferred batch into labels and
  heatmaps and spools its verdicts in one transaction, beside the next
  inference;
- the MQTT client and its sender (``Publisher``) deliver the spool;
- with ``http.port`` set, :mod:`edge_inspector.web` serves HTTP; images posted
  to ``/inspect`` join the camera frames in the mailbox and are not published.

One stop event, set by SIGTERM and SIGINT; shutdown runs in reverse order of
start: stop serving HTTP, stop capture, drain queued frames, finish the output stage, flush the
spool, publish offline, exit 0.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from functools import partial
from types import FrameType

from edge_inspector import systemd
from edge_inspector.capture import Camera, Frame, FrameMailbox, Triggers, check_source
from edge_inspector.config import AgentConfig
from edge_inspector.counters import Counters
from edge_inspector.errors import EdgeInspectorError
from edge_inspector.inspector import HeatmapRule, Inferred, Inspection, Inspector, heatmap_rule, load_inspector
from edge_inspector.messages import CameraState, CaptureMode, Status, Trigger, topics
from edge_inspector.outbox import Publisher, Spool
from edge_inspector.outbox.sparkplug.node import SparkplugNode
from edge_inspector.samples import SampleKeeper
from edge_inspector.stage import Stage
from edge_inspector.status_report import build_status, last_will
from edge_inspector.web.front import WebFront

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    """One inspection station."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.topics = topics(config.mqtt.prefix, config.station)
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.triggers = Triggers(config.cameras)
        self.counters = Counters()
        self.inspector: Inspector | None = None
        self.cameras: list[Camera] = []
        self.publisher: Publisher | None = None
        self.spool: Spool | None = None
        self.samples = SampleKeeper(config.samples)
        self._last_reload_error: str | None = None
        self.mailbox = FrameMailbox()
        self.web: WebFront | None = None
        self._heatmaps: HeatmapRule = heatmap_rule(config.mqtt.heatmap)
        if config.http.port is not None:
            self._heatmaps = WebFront.heatmap_rule(self._heatmaps)

    # -- model -------------------------------------------------------------
    def _reload(self) -> None:
        self.reload_requested.clear()
        try:
            fresh = load_inspector(self.config, self._heatmaps)
        except EdgeInspectorError as exc:
            self._last_reload_error = str(exc)
            self.counters.add("reload_failures")
            log.error("reload refused, the current model keeps running: %s", exc)
        else:
            old, self.inspector = self.inspector, fresh
            if old is not None:
                old.backend.close()
            if self.publisher is not None:
                self.publisher.new_model(fresh.model, fresh.classes)
            self._last_reload_error = None
            self.counters.add("reloads")
            log.info("reloaded %s %s", fresh.model.name, fresh.model.version)
        self._publish_status()

    # -- MQTT --------------------------------------------------------------
    def _status(self, state: str) -> Status:
        return build_status(
            self.config,
            state,
            cameras=self.cameras,
            counters=self.counters,
            model=self.inspector.model if self.inspector else None,
            reload_error=self._last_reload_error,
            spool=self.spool,
            publisher=self.publisher,
        )

    def _status_payload(self, state: str) -> bytes:
        return self._status(state).model_dump_json().encode()

    def _publish_status(self) -> None:
        if self.publisher is not None:
            self.publisher.publish_status(self._status_payload("online"))

    def _command(self, topic: str, payload: bytes) -> None:
        if topic == self.topics["trigger"]:
            try:
                trigger = Trigger.model_validate_json(payload)
            except ValueError as exc:
                log.warning("ignoring malformed trigger %r: %s", payload[:200], exc)
                self.counters.add("bad_commands")
                return
            if not self.triggers.route(trigger):
                self.counters.add("bad_commands")
        elif topic == self.topics["reload"]:
            self.reload_requested.set()

    # -- main loop ---------------------------------------------------------
    def _output(self, inferred: tuple[Inspector, Inferred]) -> None:
        """The output stage, beside the next inference: labels and heatmaps, answers to posted images, and the
        cameras' verdicts to the spool."""
        inspector, batch = inferred
        inspections = inspector.judge(batch)
        if self.web is not None:
            inspections = self.web.answer(inspector, inspections)
        if inspections:
            self._publish(inspector, inspections)

    def _publish(self, inspector: Inspector, inspections: list[Inspection]) -> None:
        """Spool the cameras' verdicts and heatmaps (one transaction, ``seq`` included), keep samples."""
        assert self.publisher is not None
        verdicts = []
        with self.publisher.batch() as batch:
            for item in inspections:
                seq = batch.next_seq()
                heatmap = item.heatmap_jpeg is not None
                verdict = inspector.verdict(item, station=self.config.station, seq=seq, heatmap=heatmap)
                batch.add("verdict", verdict.model_dump_json().encode())
                if item.heatmap_jpeg is not None:
                    batch.add("heatmap", item.heatmap_jpeg)
                verdicts.append(verdict)
        for item, verdict in zip(inspections, verdicts, strict=True):
            if self.web is not None:
                self.web.published(inspector, item, verdict)
            if not self.samples.wanted(item.is_defect, item.confidence):
                continue
            if self.publisher.disk_full:  # keeping samples pauses: the disk's room is for verdicts
                self.counters.add("samples_skipped")
            else:
                stamp = item.frame.captured_at.strftime("%Y%m%dT%H%M%S")
                self.samples.save(item.roi_image, item.label, verdict.seq, stamp)
        self.counters.inferred([i.label for i in inspections])

    def _inspect(
        self, frames: list[Frame], output: Stage[tuple[Inspector, Inferred]], give_up: threading.Event
    ) -> None:
        """Infer a micro-batch and hand it to the output stage (waiting for room until ``give_up`` is set).

        Frames come prepared by their capture thread; one prepared for a
        model since replaced is prepared again here, and when that fails (an
        ROI outside the frame) the batch goes frame by frame, so one camera's
        bad frames do not cost the others their verdicts.
        """
        inspector = self.inspector
        assert inspector is not None
        if self.web is not None:
            frames = self.web.waited_for(frames)
        if not frames:
            return
        try:
            inferred = inspector.infer(frames)
        except ValueError as exc:
            if len(frames) > 1:
                for frame in frames:
                    self._inspect([frame], output, give_up)
                return
            self.counters.add("failed_frames")
            log.error("camera %s: could not inspect frame %d: %s", frames[0].camera, frames[0].index, exc)
            if self.web is not None:
                self.web.failed(frames[0], exc)
            return
        if not output.put((inspector, inferred), give_up):
            log.warning("stopping: %d inferred frame(s) not reported, the output stage is stuck", len(frames))

    def _watchdog_ok(self) -> bool:
        """Whether the agent works: systemd restarts it when this stays False.

        A camera that is away is not the agent's fault: while its capture
        thread is alive and making progress (connecting, reconnecting, waiting
        for triggers) the answer is yes. It is no when any capture thread
        hangs (a read that never returns) or died, or when a free-running
        camera streams but no frame has gone through inference for
        ``stall_after_s`` (this loop is the inference loop, so a hung
        inference stops the pings by itself).
        """
        stall = self.config.health.stall_after_s
        now = time.monotonic()
        for camera in self.cameras:
            if camera.state is CameraState.ENDED:
                continue
            if not camera.is_alive() or camera.stalled_for() > stall:
                return False
            streaming = camera.state is CameraState.STREAMING and camera.config.mode is CaptureMode.FREE_RUNNING
            if streaming and min(self.counters.idle_for(), now - camera.state_since) >= stall:
                return False
        return True

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stop.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def run(self) -> int:
        """Run until stopped; returns the exit code.

        Raises:
            EdgeInspectorError: start-up failed (bad bundle, source, broker settings).
        """
        self._install_signals()
        for camera in self.config.cameras:
            check_source(camera)
        self.inspector = load_inspector(self.config, self._heatmaps)
        self.spool = Spool(self.config.spool.path, max_bytes=int(self.config.spool.max_mb * 1024 * 1024))
        output: Stage[tuple[Inspector, Inferred]] = Stage("output", self._output, background=True)
        offline = last_will(self.config, self.inspector.model if self.inspector else None)
        sparkplug = None
        if self.config.mqtt.format == "sparkplug":
            sparkplug = SparkplugNode.for_agent(self.config, self.inspector.model, self.inspector.classes)
        self.publisher = Publisher(
            self.config.mqtt,
            station=self.config.station,
            spool=self.spool,
            on_command=self._command if self.config.mqtt.commands else None,
            status_offline=offline,
            sparkplug=sparkplug,
            on_connected=self._publish_status,
        )
        try:
            if self.config.http.port is not None:
                online = partial(self._status, "online")
                self.web = WebFront(self.config, self.mailbox, online, self.counters, self.stop)
                self.web.start()
            self.publisher.start()
            # a camera that goes away or comes back is news for the MES now, not at the next status tick
            self.cameras = [
                Camera(
                    camera,
                    self.mailbox,
                    self.stop,
                    self.triggers.queue(camera.name),
                    on_state=lambda _state: self._publish_status(),
                    prepare=self._prepare,
                )
                for camera in self.config.cameras
            ]
            for camera in self.cameras:
                camera.start()
            output.start()
            systemd.ready()
            self._loop(output)
        finally:
            self._shutdown(output)
        return 0

    def _prepare(self, frame: Frame) -> Frame:
        """Capture threads prepare their frames for the model that runs now."""
        assert self.inspector is not None
        return self.inspector.prepare(frame)

    def _loop(self, output: Stage[tuple[Inspector, Inferred]]) -> None:
        watchdog = systemd.watchdog_interval()
        next_status = time.monotonic() + self.config.health.status_interval_s
        next_ping = time.monotonic()
        while not self.stop.is_set():
            if self.reload_requested.is_set():
                self._reload()
            frames = self.mailbox.take(self.config.model.max_batch, timeout=0.2)
            if frames:
                self._inspect(frames, output, self.stop)
            now = time.monotonic()
            if now >= next_status:
                self._publish_status()
                next_status = now + self.config.health.status_interval_s
            if watchdog is not None and now >= next_ping and self._watchdog_ok():
                systemd.watchdog_ping()
                next_ping = now + watchdog

    def _shutdown(self, output: Stage[tuple[Inspector, Inferred]]) -> None:
        systemd.stopping()
        deadline = time.monotonic() + self.config.drain_timeout_s
        self.stop.set()  # from here on HTTP answers new uploads 503, and waiting ones are answered in the drain
        for camera in self.cameras:
            camera.join(timeout=max(0.1, deadline - time.monotonic()))
        drain_over = threading.Event()  # the output stage gets until the deadline to take what is left
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), drain_over.set)
        timer.start()
        while output.is_alive() and output.failure is None and not drain_over.is_set():
            frames = self.mailbox.take(self.config.model.max_batch, timeout=0.0)
            if not frames:
                break
            self._inspect(frames, output, drain_over)
        timer.cancel()
        if not output.close(max(0.1, deadline - time.monotonic())):
            log.warning("stopping before the output stage finished its last frames")
        if self.web is not None:
            self.web.close()
        if self.publisher is not None:
            if not self.publisher.flush(max(0.1, deadline - time.monotonic())):
                log.warning(
                    "stopping with %s still spooled; it is sent after the next start",
                    self.spool.depth() if self.spool else {},
                )
            self.publisher.stop(
                timeout=max(1.0, deadline - time.monotonic()), final_status=self._status_payload("offline")
            )
        if self.spool is not None:
            self.spool.close()
        if self.inspector is not None:
            self.inspector.backend.close()
        log.info("stopped: %s", json.dumps(self.counters.snapshot()))
