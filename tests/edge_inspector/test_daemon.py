"""The agent end to end: a real Mosquitto, a real video, the daemon as a real process."""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from mjpeg_server import MjpegCamera
from mqtt_broker import MosquittoBroker, Received, Subscriber, free_port
from polling import wait_until

from edge_inspector.bundle import load_bundle, write_manifest
from edge_inspector.messages import Status, Verdict
from trainer.synth.video import render_frames, write_video

STATION = "aoi-7"


def _video(tmp_path: Path, count: int, name: str = "line.avi") -> Path:
    frames, _ = render_frames(count, size=64, seed=5, frame_size=128)
    return write_video(tmp_path / name, frames)


def _config(
    tmp_path: Path, bundle: Path, broker: MosquittoBroker, source: Path | None, **sections: dict | list
) -> Path:
    """The agent's config: one camera on ``source``, or ``cameras=[...]`` instead; ``sections`` update the rest."""
    config = {
        "station": STATION,
        "camera": {"source": str(source), "fps": 10},
        "model": {"bundle": str(bundle), "backend": "onnxruntime", "precision": "int8", "device": "cpu", "threads": 1},
        "mqtt": {"host": broker.host, "port": broker.port, "heatmap": "always", "heatmap_qos": 1},
        "spool": {"path": str(tmp_path / "spool.sqlite")},
        "health": {"status_interval_s": 1},
        "drain_timeout_s": 10,
    }
    for key, values in sections.items():
        if key == "cameras":
            del config["camera"]
            config[key] = values
        else:
            config[key] = {**config.get(key, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = (tmp_path / "agent.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(config)], stdout=log, stderr=log, env=env
    )


def _stop(agent: subprocess.Popen, tmp_path: Path) -> int:
    agent.send_signal(signal.SIGTERM)
    try:
        return agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("agent did not stop within 30 s of SIGTERM:\n" + (tmp_path / "agent.log").read_text()[-3000:])


def _verdicts(messages: list[Received]) -> list[Verdict]:
    return [Verdict.model_validate_json(m.payload) for m in messages if m.topic.endswith("/verdict")]


def _statuses(messages: list[Received]) -> list[Status]:
    return [Status.model_validate_json(m.payload) for m in messages if m.topic.endswith("/status")]


def test_video_to_mqtt_end_to_end(tmp_path: Path, tiny_bundle: Path) -> None:
    metrics_port = free_port()
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = _config(tmp_path, tiny_bundle, broker, _video(tmp_path, 14), health={"prometheus_port": metrics_port})
        agent = _start(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(_verdicts(ms)) >= 14, timeout=60)
            sub.wait_until(lambda ms: any(s.cameras[0].state == "ended" for s in _statuses(ms)), timeout=10)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                metrics = response.read().decode()
            assert "edge_inspector_inferred 14.0" in metrics and "edge_inspector_broker_connected 1.0" in metrics
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
        received = sub.wait_until(lambda ms: any(s.state == "offline" for s in _statuses(ms)), timeout=10)

    verdicts = _verdicts(received)
    assert [v.seq for v in verdicts] == list(range(1, 15))
    assert all(v.station == STATION and v.camera == "cam0" and v.part_id is None for v in verdicts)
    manifest = load_bundle(tiny_bundle).manifest
    for v in verdicts:
        assert set(v.probabilities) == set(manifest.classes) and abs(sum(v.probabilities.values()) - 1) < 1e-3
        assert v.model.name == "tiny" and v.model.precision == "int8" and v.model.backend == "onnxruntime"
        assert v.model.sha256 == manifest.files["model.int8.u8s8.onnx"].sha256
        assert v.is_defect == (v.score >= v.threshold) and v.heatmap
    heatmaps = [m for m in received if m.topic.endswith("/heatmap")]
    assert len(heatmaps) == 14
    for message, verdict in zip(heatmaps, verdicts, strict=True):
        assert message.properties["ContentType"] == "image/jpeg"
        assert ["seq", str(verdict.seq)] in [list(p) for p in message.properties["UserProperty"]]
        picture = cv2.imdecode(np.frombuffer(message.payload, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (128, 128, 3)
    statuses = _statuses(received)
    assert statuses[0].state == "online" and statuses[0].model is not None
    final = statuses[-1]
    assert final.state == "offline" and final.counters["inferred"] == 14
    assert final.counters["captured"] == 14 and final.counters["dropped"] == 0
    assert final.cameras[0].state == "ended" and final.cameras[0].counters["captured"] == 14
    assert final.spool["verdicts"] == 0


def test_triggered_mode_carries_part_ids(tmp_path: Path, tiny_bundle: Path) -> None:
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/verdict") as sub:
        config = _config(
            tmp_path, tiny_bundle, broker, _video(tmp_path, 10), camera={"mode": "triggered"}, mqtt={"commands": True}
        )
        agent = _start(config, tmp_path)
        try:
            trigger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            trigger.connect(broker.host, broker.port)
            trigger.loop_start()
            # The agent subscribes to cmd/trigger as it connects, then publishes "online" on that connection:
            # once "online" is here, the broker has the subscription.
            with Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/status") as status:
                online = status.wait_until(lambda ms: any(s.state == "online" for s in _statuses(ms)), timeout=60)
            assert any(s.state == "online" for s in _statuses(online))
            for part in ("PCB-001", "PCB-002", "not json", "PCB-003"):
                payload = part if part == "not json" else json.dumps({"part_id": part})
                trigger.publish(f"edge-inspector/{STATION}/cmd/trigger", payload, qos=1).wait_for_publish(5)
            received = sub.wait_for(3, timeout=30)
            trigger.loop_stop()
            trigger.disconnect()
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
    verdicts = _verdicts(received)
    assert [v.part_id for v in verdicts] == ["PCB-001", "PCB-002", "PCB-003"]
    assert "ignoring malformed trigger" in (tmp_path / "agent.log").read_text()


def _folder(tmp_path: Path, count: int, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i, frame in enumerate(render_frames(count, size=64, seed=9, frame_size=128)[0]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_several_cameras_share_one_model_in_micro_batches(tmp_path: Path, tiny_bundle: Path) -> None:
    cameras = [
        {"name": "top", "source": str(_video(tmp_path, 12)), "fps": 1000},
        {"name": "side", "source": str(_folder(tmp_path, 12, "side")), "fps": 1000, "roi": [0, 0, 64, 48]},
        # aimed at pixels its 128 px frames do not have: its frames fail, the others' verdicts go on
        {"name": "misaimed", "source": str(_video(tmp_path, 5, "misaimed.avi")), "roi": [400, 400, 50, 50]},
    ]
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = _config(tmp_path, tiny_bundle, broker, None, cameras=cameras, model={"max_batch": 4})
        agent = _start(config, tmp_path)
        try:
            sub.wait_until(
                lambda ms: (
                    any(all(c.state == "ended" for c in s.cameras) for s in _statuses(ms)) and len(_verdicts(ms)) >= 24
                ),
                timeout=90,
            )
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
        received = sub.wait_until(lambda ms: any(s.state == "offline" for s in _statuses(ms)), timeout=10)
    verdicts = _verdicts(received)
    assert sorted(v.seq for v in verdicts) == list(range(1, 25))  # one seq per station, no gap
    assert sorted(v.camera for v in verdicts) == ["side"] * 12 + ["top"] * 12
    assert max(v.latency.batch for v in verdicts) >= 2  # both cameras' frames inferred together
    shapes = {}
    for message in (m for m in received if m.topic.endswith("/heatmap")):
        seq = int(dict(message.properties["UserProperty"])["seq"])
        camera = next(v.camera for v in verdicts if v.seq == seq)
        shapes.setdefault(camera, set()).add(cv2.imdecode(np.frombuffer(message.payload, np.uint8), 1).shape)
    assert shapes == {"top": {(128, 128, 3)}, "side": {(48, 64, 3)}}  # each camera's own ROI
    final = _statuses(received)[-1]
    assert [(c.name, c.state, c.counters["captured"], c.counters["failed_frames"]) for c in final.cameras] == [
        ("top", "ended", 12, 0),
        ("side", "ended", 12, 0),
        ("misaimed", "ended", 5, 5),
    ]
    assert final.counters["captured"] == 29 and final.counters["inferred"] == 24
    log = (tmp_path / "agent.log").read_text()
    assert log.count("camera misaimed: frames cannot be inspected: roi (400, 400, 50, 50) lies outside") == 1


def test_a_trigger_goes_to_the_camera_it_names_or_to_every_triggered_camera(tmp_path: Path, tiny_bundle: Path) -> None:
    cameras = [
        {"name": name, "source": str(_video(tmp_path, 6, f"{name}.avi")), "mode": "triggered"}
        for name in ("left", "right")
    ]
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = _config(tmp_path, tiny_bundle, broker, None, cameras=cameras, mqtt={"commands": True})
        agent = _start(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(_statuses(ms)) >= 1, timeout=60)  # connected and subscribed
            trigger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            trigger.connect(broker.host, broker.port)
            trigger.loop_start()
            for payload in ({"part_id": "B1"}, {"part_id": "B2", "camera": "right"}, {"part_id": "B3", "camera": "x"}):
                topic = f"edge-inspector/{STATION}/cmd/trigger"
                trigger.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
            received = sub.wait_until(
                lambda ms: len(_verdicts(ms)) >= 3 and _statuses(ms)[-1].counters.get("bad_commands") == 1,
                timeout=30,
            )
            trigger.loop_stop()
            trigger.disconnect()
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
    got = sorted((v.part_id, v.camera) for v in _verdicts(received))
    assert got == [("B1", "left"), ("B1", "right"), ("B2", "right")]
    assert "no triggered camera 'x'" in (tmp_path / "agent.log").read_text()


def _spooled_verdicts(path: Path) -> Callable[[], int]:
    """How many verdicts the agent's spool holds now (read-only, beside the running agent)."""

    def count() -> int:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute("SELECT COUNT(*) FROM messages WHERE kind = 'verdict'").fetchone()[0])

    return count


def test_broker_outage_loses_no_verdict(tmp_path: Path, tiny_bundle: Path) -> None:
    topic = f"edge-inspector/{STATION}/verdict"
    with (
        MosquittoBroker(persistence=True) as broker,
        Subscriber(broker.host, broker.port, topic, session_expiry=600) as sub,
    ):
        agent = _start(_config(tmp_path, tiny_bundle, broker, _video(tmp_path, 40), camera={"fps": 8}), tmp_path)
        try:
            sub.wait_for(5, timeout=60)
            broker.stop()
            spooled = _spooled_verdicts(tmp_path / "spool.sqlite")
            assert wait_until(lambda: spooled() >= 10, timeout=60)  # inspected while the broker is away: kept
            broker.start()
            received = sub.wait_until(lambda ms: {v.seq for v in _verdicts(ms)} >= set(range(1, 41)), timeout=90)
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
    seqs = [v.seq for v in _verdicts(received)]
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, 41))  # every verdict, in order (QoS 1 may repeat one, never reorder)


def test_reload_good_and_corrupt_bundle(tmp_path: Path, tiny_bundle: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = _config(
            tmp_path, bundle, broker, _video(tmp_path, 6), camera={"loop": True, "fps": 5}, mqtt={"commands": True}
        )
        agent = _start(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(_verdicts(ms)) >= 2, timeout=60)
            manifest = load_bundle(bundle).manifest
            write_manifest(bundle, manifest.model_copy(update={"model_version": "2.0.0"}))
            agent.send_signal(signal.SIGHUP)
            sub.wait_until(lambda ms: any(v.model.version == "2.0.0" for v in _verdicts(ms)), timeout=30)

            model_file = bundle / "model.int8.u8s8.onnx"
            data = bytearray(model_file.read_bytes())
            data[len(data) // 3] ^= 0xFF
            model_file.write_bytes(bytes(data))
            reloader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            reloader.connect(broker.host, broker.port)
            reloader.loop_start()
            reloader.publish(f"edge-inspector/{STATION}/cmd/reload", b"{}", qos=1).wait_for_publish(5)
            received = sub.wait_until(lambda ms: any(s.reload_error for s in _statuses(ms)), timeout=30)
            count = len(_verdicts(received))
            received = sub.wait_until(lambda ms: len(_verdicts(ms)) >= count + 3, timeout=30)  # still inspecting
            reloader.loop_stop()
            reloader.disconnect()
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
    refused = next(s for s in _statuses(received) if s.reload_error)
    assert "model.int8.u8s8.onnx: sha256 mismatch" in refused.reload_error
    assert refused.model is not None and refused.model.version == "2.0.0"
    assert _verdicts(received)[-1].model.version == "2.0.0"
    assert refused.counters["reloads"] == 1 and refused.counters["reload_failures"] == 1


def test_start_up_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: x\ncamera: {source: 0}\nmodel: {bundle: /nowhere}\nmqtt: {port: 99999}\n")
    run = subprocess.run(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "mqtt.port" in run.stderr and "Traceback" not in run.stderr
    bad.write_text(f"station: x\ncamera: {{source: {tmp_path}}}\nmodel: {{bundle: {tmp_path / 'nowhere'}}}\n")
    run = subprocess.run(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "bundle directory not found" in run.stderr and "Traceback" not in run.stderr


def test_last_will_names_station_and_model_not_a_stale_uptime(tmp_path: Path, tiny_bundle: Path) -> None:
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = _config(tmp_path, tiny_bundle, broker, _video(tmp_path, 10), camera={"loop": True, "fps": 5})
        agent = _start(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(_verdicts(ms)) >= 3, timeout=60)
            agent.send_signal(signal.SIGKILL)  # no clean disconnect: the broker publishes the will
            agent.wait(10)
            received = sub.wait_until(lambda ms: any(s.state == "offline" for s in _statuses(ms)), timeout=20)
        finally:
            agent.kill()
    (will,) = [s for s in _statuses(received) if s.state == "offline"]
    assert will.station == STATION and will.model is not None and will.model.name == "tiny"
    assert will.uptime_s is None and will.counters == {} and not will.broker_connected
    assert [(c.name, c.state, c.counters) for c in will.cameras] == [("cam0", None, {})]


def _rows(tmp_path: Path) -> int:
    """Messages waiting in the agent's spool."""
    with sqlite3.connect(tmp_path / "spool.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_refused_credentials_keep_inspecting_and_retry(tmp_path: Path, tiny_bundle: Path) -> None:
    """A broker that refuses our password: inspect and spool on, retry, deliver once it accepts."""
    users = tmp_path / "users"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(users), "line7", "right"], check=True, capture_output=True)
    users.chmod(0o600)
    (tmp_path / "password").write_text("wrong\n")
    extra = ["allow_anonymous false", f"password_file {users}"]
    with MosquittoBroker(extra_config=extra) as broker:
        config = _config(
            tmp_path,
            tiny_bundle,
            broker,
            _video(tmp_path, 10),
            camera={"loop": True, "fps": 5},
            mqtt={"username": "line7", "password_file": str(tmp_path / "password"), "heatmap": "never"},
            spool={"path": str(tmp_path / "spool.sqlite")},
        )
        agent = _start(config, tmp_path)
        try:
            # refused again and again, while frames go on through inference
            wait_until(lambda: broker.log().count("not authorised") >= 2 and _rows(tmp_path) >= 5, timeout=30)
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
            log = (tmp_path / "agent.log").read_text()
            assert log.count("refused the connection: Not authorized") == 1  # logged once per change of state
            assert broker.log().count("not authorised") >= 2  # and retried
            assert _rows(tmp_path) >= 5  # inspected and kept for later

            subprocess.run(["mosquitto_passwd", "-b", str(users), "line7", "wrong"], check=True, capture_output=True)
            broker.stop()
            broker.start()  # now it accepts the agent's password
            assert wait_until(lambda: "mqtt: connected" in (tmp_path / "agent.log").read_text(), timeout=60)
            assert _stop(agent, tmp_path) == 0  # drains the spool to the broker
            assert _rows(tmp_path) == 0
        finally:
            agent.kill()


@contextmanager
def _tiny_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A real tmpfs of ``size_kb`` at ``path`` (needs root; the test skips without it)."""
    path.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)]
    mounted = subprocess.run(command, capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {name: float(value) for name, value in (ln.split() for ln in lines if ln and not ln.startswith("#"))}


def _wait_metric(port: int, name: str, ok: Callable[[float], bool], timeout: float) -> dict[str, float]:
    values: dict[str, float] = {}

    def holds() -> bool:
        nonlocal values
        try:
            values = _metrics(port)
        except urllib.error.URLError:  # the agent is still starting
            values = {}
        return ok(values.get(name, float("nan")))

    assert wait_until(holds, timeout=timeout, interval=0.3), f"{name}: {values.get(name)} after {timeout} s"
    return values


def test_a_full_disk_degrades_inspection_never_stops(tmp_path: Path, tiny_bundle: Path) -> None:
    """The spool on a real tiny tmpfs, the broker away: the agent inspects on, sends live, recovers."""
    metrics_port, broker_port = free_port(), free_port()
    with _tiny_disk(tmp_path / "disk", 1200) as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 1000 * 1024)  # room an engineer frees later
        broker = MosquittoBroker(port=broker_port)  # not started: the broker is away
        config = _config(
            tmp_path,
            tiny_bundle,
            broker,
            _video(tmp_path, 10),
            camera={"loop": True, "fps": 10},
            spool={"path": str(disk / "spool.sqlite"), "max_mb": 64},
            samples={"folder": str(disk / "samples"), "low_confidence": 0.99},
            health={"prometheus_port": metrics_port},
        )
        agent = _start(config, tmp_path)
        try:
            full = _wait_metric(metrics_port, "edge_inspector_spool_disk_full", lambda v: v == 1, timeout=90)
            inferred = full["edge_inspector_inferred"]
            later = _wait_metric(metrics_port, "edge_inspector_inferred", lambda v: v > inferred, timeout=30)
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
            assert later["edge_inspector_inferred"] > full["edge_inspector_inferred"]  # inspection goes on
            assert later["edge_inspector_spool_lost"] > 0  # nowhere to go: counted, not hidden
            assert later["edge_inspector_samples_skipped"] > 0  # keeping samples paused
            assert "the disk is full" in (tmp_path / "agent.log").read_text()

            broker.start()  # the broker is back while the disk is still full: verdicts go out live
            with Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/verdict") as sub:
                received = sub.wait_until(lambda ms: len(_verdicts(ms)) >= 5, timeout=60)
                live = _verdicts(received)
                assert [v.seq for v in live] == sorted(v.seq for v in live)
                _wait_metric(metrics_port, "edge_inspector_spool_undurable", lambda v: v > 0, timeout=30)

                filler.unlink()  # room again: durability resumes by itself
                _wait_metric(metrics_port, "edge_inspector_spool_disk_full", lambda v: v == 0, timeout=60)
                assert "durable again" in (tmp_path / "agent.log").read_text()
                before = max(v.seq for v in _verdicts(sub.messages))
                after = sub.wait_until(lambda ms: max(v.seq for v in _verdicts(ms)) > before + 5, timeout=60)
                first_capture: dict[int, datetime] = {}
                for verdict in _verdicts(after):  # a seq names one verdict: a repeat is a redelivery of it
                    assert first_capture.setdefault(verdict.seq, verdict.captured_at) == verdict.captured_at
            assert _stop(agent, tmp_path) == 0
        finally:
            agent.kill()
            broker.close()


# --- the systemd watchdog, through a real notify socket -----------------------------------------------

_HANG_ON_FILE = '''
"""Fault injection for the agent under test: inference blocks while {flag} exists."""
import os
import time

from edge_inspector.backends import onnxruntime as _ort

_infer = _ort.OnnxRuntimeBackend.infer


def _hanging_infer(self, images):
    while os.path.exists({flag!r}):
        time.sleep(0.05)
    return _infer(self, images)


_ort.OnnxRuntimeBackend.infer = _hanging_infer
'''


class _NotifyLog:
    """Reads every datagram the agent sends to its ``$NOTIFY_SOCKET``, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        """Messages received during the next ``seconds``."""
        found = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            found.append((time.monotonic(), data.decode()))
        self.messages += found
        return found


def _pings(messages: list[tuple[float, str]]) -> list[float]:
    return [at for at, text in messages if "WATCHDOG=1" in text.split("\n")]


def _largest_gap(times: list[float], start: float, end: float) -> float:
    edges = [start, *times, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


WATCHDOG_S = 3.0


def test_watchdog_pings_through_a_camera_outage_and_stops_when_inference_hangs(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    notify_path = tmp_path / "notify.sock"
    if len(os.fsencode(notify_path)) >= 108:
        pytest.skip(f"tmp_path too long for an AF_UNIX socket path: {notify_path}")
    notify = _NotifyLog(notify_path)
    flag = tmp_path / "hang"
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(_HANG_ON_FILE.format(flag=str(flag)))
    camera = MjpegCamera(render_frames(8, size=64, seed=5, frame_size=128)[0], fps=15).start()
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),  # the agent pings every WATCHDOG_S / 2
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "inject"), os.environ.get("PYTHONPATH", "")]),
    }
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/status") as sub:
        config = _config(
            tmp_path,
            tiny_bundle,
            broker,
            camera.url,  # type: ignore[arg-type]
            camera={"fps": 5, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5},
            health={"stall_after_s": 2, "status_interval_s": 30},
        )
        agent = _start(config, tmp_path, env)
        try:
            started = notify.collect(20)
            assert any("READY=1" in text for _, text in started), started
            ready_at = next(at for at, text in started if "READY=1" in text)
            assert _pings([m for m in started if m[0] >= ready_at])

            camera.stop()  # unplugged for 8 s: four times stall_after_s
            outage_start = time.monotonic()
            outage = notify.collect(8)
            # systemd's contract: a ping within every WATCHDOG_USEC, or the service is killed
            assert _largest_gap(_pings(outage), outage_start, time.monotonic()) < WATCHDOG_S, _pings(outage)
            sub.wait_until(lambda ms: any(s.cameras[0].state == "reconnecting" for s in _statuses(ms)), timeout=5)

            camera.start()
            sub.wait_until(lambda ms: _statuses(ms)[-1].cameras[0].state == "streaming", timeout=15)
            notify.collect(2)
            flag.touch()  # inference hangs from its next frame on
            hang_start = time.monotonic()
            hung = notify.collect(10)
            # pings stop once inference has not moved for stall_after_s (2 s): one more may be due before that
            late = [at for at in _pings(hung) if at > hang_start + 2 + WATCHDOG_S]
            assert late == [], "WATCHDOG=1 went on while inference hung"
            flag.unlink()
            assert _pings(notify.collect(3)), "pings resume once inference does"
            assert _stop(agent, tmp_path) == 0
        finally:
            flag.unlink(missing_ok=True)
            agent.kill()
            camera.stop()
            notify.sock.close()
