"""Capture from real video files, image folders and an HTTP MJPEG stream."""

import queue
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_server import MjpegCamera, read_index, render_index
from polling import wait_until

from edge_inspector.capture import Camera, CameraState, FrameMailbox, TriggerRequest, check_source
from edge_inspector.config import CameraConfig, CaptureMode
from edge_inspector.errors import ConfigError
from trainer.synth.video import write_video


def _frames(count: int, shape=(60, 80)) -> list[np.ndarray]:
    return [np.full((*shape, 3), (i * 23) % 256, np.uint8) for i in range(count)]


def _drain(mailbox: FrameMailbox, camera: Camera, timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and (camera.is_alive() or mailbox.qsize()):
        frame = mailbox.get(0.05)
        if frame is not None:
            got.append(frame)
    return got


def test_video_file_every_frame_in_order(tmp_path: Path) -> None:
    video = write_video(tmp_path / "line.avi", _frames(12))
    mailbox, stop = FrameMailbox(latest=False), threading.Event()
    camera = Camera(CameraConfig(source=str(video), fps=200), mailbox, stop)
    camera.start()
    frames = _drain(mailbox, camera)
    camera.join(5)
    assert [f.index for f in frames] == list(range(1, 13))
    assert abs(int(frames[3].image.mean()) - 69) <= 3  # RGB content survives (MJPG is lossy)
    assert camera.state is CameraState.ENDED and camera.counters.snapshot()["captured"] == 12


def test_free_running_keeps_newest_and_counts_drops(tmp_path: Path) -> None:
    video = write_video(tmp_path / "line.avi", _frames(30))
    mailbox, stop = FrameMailbox(latest=True), threading.Event()
    camera = Camera(CameraConfig(source=str(video), fps=300), mailbox, stop)
    camera.start()
    consumed = []
    while camera.is_alive() or mailbox.qsize():
        frame = mailbox.get(0.05)
        if frame is not None:
            consumed.append(frame.index)
            time.sleep(0.03)  # a slow model
    counters = camera.counters.snapshot()
    assert counters["dropped"] > 0
    assert counters["captured"] == 30 == len(consumed) + counters["dropped"]
    assert consumed == sorted(consumed) and consumed[-1] == 30  # the newest frame is never lost


def test_folder_with_undecodable_image(tmp_path: Path) -> None:
    for i, frame in enumerate(_frames(3)):
        cv2.imwrite(str(tmp_path / f"{i}_frame.png"), frame)
    (tmp_path / "1b_broken.png").write_bytes(b"\x89PNG garbage")
    mailbox, stop = FrameMailbox(latest=False), threading.Event()
    camera = Camera(CameraConfig(source=str(tmp_path), fps=100), mailbox, stop)
    camera.start()
    frames = _drain(mailbox, camera)
    assert len(frames) == 3 and camera.counters.snapshot()["undecodable"] == 1


def test_triggered_mode_reads_one_frame_per_part_and_never_drops(tmp_path: Path) -> None:
    video = write_video(tmp_path / "parts.avi", _frames(10))
    triggers: queue.Queue[TriggerRequest] = queue.Queue()
    mailbox, stop = FrameMailbox(latest=False), threading.Event()
    camera = Camera(CameraConfig(source=str(video), mode=CaptureMode.TRIGGERED), mailbox, stop, triggers)
    camera.start()
    for part in ("A1", "A2", "A3", "A4"):
        triggers.put(TriggerRequest(part))
    got = [mailbox.get(5.0) for _ in range(4)]
    assert [f.part_id for f in got] == ["A1", "A2", "A3", "A4"]
    assert [f.index for f in got] == [1, 2, 3, 4]
    assert mailbox.get(0.3) is None  # nothing without a trigger
    stop.set()
    camera.join(5)
    assert camera.state is CameraState.STOPPED


def test_stream_that_ends_and_comes_back_reconnects() -> None:
    server = MjpegCamera(_frames(4), fps=30).start()
    mailbox, stop = FrameMailbox(latest=False), threading.Event()
    states: list[CameraState] = []
    config = CameraConfig(source=server.url, fps=30, reconnect_initial_s=0.2, reconnect_max_s=0.5)
    camera = Camera(config, mailbox, stop, on_state=states.append)
    camera.start()
    try:
        assert mailbox.get(10.0) is not None
        server.stop()
        deadline = time.monotonic() + 10
        while camera.counters.snapshot()["reconnects"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.state in (CameraState.RECONNECTING, CameraState.STREAMING)
        while mailbox.get(0.2) is not None:  # empty what came before the outage
            pass
        server.start()
        assert mailbox.get(15.0) is not None  # frames flow again
        assert camera.state is CameraState.STREAMING
        assert CameraState.RECONNECTING in states and camera.counters.snapshot()["reconnects"] >= 1
    finally:
        stop.set()
        server.stop()
        camera.join(5)


def test_sources_checked_before_start(tmp_path: Path) -> None:
    pipeline = "videotestsrc ! videoconvert ! appsink"
    if "YES" in next(ln for ln in cv2.getBuildInformation().splitlines() if "GStreamer:" in ln):
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(ConfigError, match="no GStreamer support"):
        check_source(CameraConfig(source=pipeline))
    with pytest.raises(ConfigError, match="does not exist"):
        check_source(CameraConfig(source=str(tmp_path / "missing.mp4")))
    check_source(CameraConfig(source="rtsp://user:secret@10.0.0.5/stream"))  # checked when opened, not here


LIVE_FPS = 30.0


def _live_camera(config: CameraConfig, latest: bool) -> tuple[Camera, FrameMailbox, threading.Event]:
    mailbox, stop = FrameMailbox(latest=latest), threading.Event()
    triggers: queue.Queue[TriggerRequest] = queue.Queue()
    return Camera(config, mailbox, stop, triggers), mailbox, stop


def test_free_running_on_a_live_stream_inspects_the_newest_frame() -> None:
    """A 30 fps camera, inspected at 4 fps: frames must not queue up in the stream's buffers."""
    server = MjpegCamera(fps=LIVE_FPS, render=render_index).start()
    camera, mailbox, stop = _live_camera(CameraConfig(source=server.url, fps=4), latest=True)
    camera.start()
    ages = []
    try:
        assert mailbox.get(15.0) is not None
        for _ in range(16):  # 4 s of inspection; each takes three camera frames, as a model would
            frame = mailbox.get(5.0)
            assert frame is not None
            ages.append(server.served - 1 - read_index(frame.image))  # frames the camera sent since
            sent = server.served
            assert wait_until(lambda sent=sent: server.served >= sent + 3, timeout=5)
    finally:
        stop.set()
        server.stop()
        camera.join(5)
    assert max(ages) <= 2, ages  # at most two frame periods old, however long it runs
    counters = camera.counters.snapshot()
    assert counters["skipped"] > counters["captured"] / 2  # grabbed, never decoded


def test_triggered_on_a_live_stream_inspects_a_frame_captured_after_the_trigger() -> None:
    server = MjpegCamera(fps=LIVE_FPS, render=render_index).start()
    config = CameraConfig(source=server.url, mode=CaptureMode.TRIGGERED, trigger_delay_ms=50)
    camera, mailbox, stop = _live_camera(config, latest=False)
    camera.start()
    try:
        assert wait_until(lambda: camera.state is CameraState.STREAMING, timeout=15)
        for part in range(8):
            sent = server.served  # the stream runs on between parts, filling any buffer we leave
            assert wait_until(lambda sent=sent: server.served >= sent + 9, timeout=5)
            sent_before = server.served
            request = TriggerRequest(f"P{part}")
            camera.triggers.put(request)  # type: ignore[union-attr]
            frame = mailbox.get(5.0)
            assert frame is not None and frame.part_id == f"P{part}"
            assert frame.monotonic >= request.at + 0.05  # grabbed after the trigger and its delay
            assert read_index(frame.image) >= sent_before, (part, read_index(frame.image), sent_before)
    finally:
        stop.set()
        server.stop()
        camera.join(5)
    assert mailbox.get(0.3) is None  # one frame per trigger
