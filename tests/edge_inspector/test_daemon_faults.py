"""The agent under faults: the broker away or refusing, a full disk, a hung inference and the watchdog."""

import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from agent_process import STATION, agent_config, start_agent, statuses_of, stop_agent, verdicts_of, video
from mjpeg_server import MjpegCamera
from mqtt_broker import MosquittoBroker, Subscriber, free_port
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families

from trainer.synth.video import render_frames


def _spooled(path: Path, kind: str | None = None) -> int:
    """Messages (of one kind, or all) waiting in the agent's spool now, read-only beside the running agent."""
    where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM messages {where}", args).fetchone()[0])


def test_broker_outage_loses_no_verdict(tmp_path: Path, tiny_bundle: Path) -> None:
    topic = f"edge-inspector/{STATION}/verdict"
    with (
        MosquittoBroker(persistence=True) as broker,
        Subscriber(broker.host, broker.port, topic, session_expiry=600) as sub,
    ):
        agent = start_agent(
            agent_config(tmp_path, tiny_bundle, broker, video(tmp_path, 40), camera={"fps": 8}), tmp_path
        )
        try:
            sub.wait_for(5, timeout=60)
            broker.stop()
            spool = tmp_path / "spool.sqlite"  # inspected while the broker is away: kept
            assert wait_until(lambda: _spooled(spool, "verdict") >= 10, timeout=60)
            broker.start()
            received = sub.wait_until(lambda ms: {v.seq for v in verdicts_of(ms)} >= set(range(1, 41)), timeout=90)
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
    seqs = [v.seq for v in verdicts_of(received)]
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, 41))  # every verdict, in order (QoS 1 may repeat one, never reorder)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_refused_credentials_keep_inspecting_and_retry(tmp_path: Path, tiny_bundle: Path) -> None:
    """A broker that refuses our password: inspect and spool on, retry, deliver once it accepts."""
    users = tmp_path / "users"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(users), "line7", "right"], check=True, capture_output=True)
    users.chmod(0o600)
    (tmp_path / "password").write_text("wrong\n")
    extra = ["allow_anonymous false", f"password_file {users}"]
    with MosquittoBroker(extra_config=extra) as broker:
        config = agent_config(
            tmp_path,
            tiny_bundle,
            broker,
            video(tmp_path, 10),
            camera={"loop": True, "fps": 5},
            mqtt={"username": "line7", "password_file": str(tmp_path / "password"), "heatmap": "never"},
            spool={"path": str(tmp_path / "spool.sqlite")},
        )
        agent = start_agent(config, tmp_path)
        try:
            # refused again and again, while frames go on through inference
            spool = tmp_path / "spool.sqlite"
            assert wait_until(lambda: broker.log().count("not authorised") >= 2 and _spooled(spool) >= 5, timeout=30)
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
            log = (tmp_path / "agent.log").read_text()
            assert log.count("refused the connection: Not authorized") == 1  # logged once per change of state
            assert broker.log().count("not authorised") >= 2  # and retried
            assert _spooled(spool) >= 5  # inspected and kept for later

            subprocess.run(["mosquitto_passwd", "-b", str(users), "line7", "wrong"], check=True, capture_output=True)
            broker.stop()
            broker.start()  # now it accepts the agent's password
            assert wait_until(lambda: "mqtt: connected" in (tmp_path / "agent.log").read_text(), timeout=60)
            assert stop_agent(agent, tmp_path) == 0  # drains the spool to the broker
            assert _spooled(spool) == 0
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
    """The agent's unlabelled samples, read with prometheus-client's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = text_string_to_metric_families(response.read().decode())
        return {s.name: s.value for family in families for s in family.samples if not s.labels}


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
        config = agent_config(
            tmp_path,
            tiny_bundle,
            broker,
            video(tmp_path, 10),
            camera={"loop": True, "fps": 10},
            spool={"path": str(disk / "spool.sqlite"), "max_mb": 64},
            samples={"folder": str(disk / "samples"), "low_confidence": 0.99},
            http={"port": metrics_port},
        )
        agent = start_agent(config, tmp_path)
        try:
            full = _wait_metric(metrics_port, "edge_inspector_spool_disk_full", lambda v: v == 1, timeout=90)
            inferred = full["edge_inspector_inferred_total"]
            later = _wait_metric(metrics_port, "edge_inspector_inferred_total", lambda v: v > inferred, timeout=30)
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
            assert later["edge_inspector_inferred_total"] > full["edge_inspector_inferred_total"]  # inspection goes on
            assert later["edge_inspector_spool_lost_total"] > 0  # nowhere to go: counted, not hidden
            assert later["edge_inspector_samples_skipped_total"] > 0  # keeping samples paused
            assert "the disk is full" in (tmp_path / "agent.log").read_text()

            broker.start()  # the broker is back while the disk is still full: verdicts go out live
            with Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/verdict") as sub:
                received = sub.wait_until(lambda ms: len(verdicts_of(ms)) >= 5, timeout=60)
                live = verdicts_of(received)
                assert [v.seq for v in live] == sorted(v.seq for v in live)
                _wait_metric(metrics_port, "edge_inspector_spool_undurable_total", lambda v: v > 0, timeout=30)

                filler.unlink()  # room again: durability resumes by itself
                _wait_metric(metrics_port, "edge_inspector_spool_disk_full", lambda v: v == 0, timeout=60)
                assert "durable again" in (tmp_path / "agent.log").read_text()
                before = max(v.seq for v in verdicts_of(sub.messages))
                after = sub.wait_until(lambda ms: max(v.seq for v in verdicts_of(ms)) > before + 5, timeout=60)
                first_capture: dict[int, datetime] = {}
                for verdict in verdicts_of(after):  # a seq names one verdict: a repeat is a redelivery of it
                    assert first_capture.setdefault(verdict.seq, verdict.captured_at) == verdict.captured_at
            assert stop_agent(agent, tmp_path) == 0
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
        config = agent_config(
            tmp_path,
            tiny_bundle,
            broker,
            camera.url,  # type: ignore[arg-type]
            camera={"fps": 5, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5},
            health={"stall_after_s": 2, "status_interval_s": 30},
        )
        agent = start_agent(config, tmp_path, env)
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
            sub.wait_until(lambda ms: any(s.cameras[0].state == "reconnecting" for s in statuses_of(ms)), timeout=5)

            camera.start()
            sub.wait_until(lambda ms: statuses_of(ms)[-1].cameras[0].state == "streaming", timeout=15)
            notify.collect(2)
            flag.touch()  # inference hangs from its next frame on
            hang_start = time.monotonic()
            hung = notify.collect(10)
            # pings stop once inference has not moved for stall_after_s (2 s): one more may be due before that
            late = [at for at in _pings(hung) if at > hang_start + 2 + WATCHDOG_S]
            assert late == [], "WATCHDOG=1 went on while inference hung"
            flag.unlink()
            assert _pings(notify.collect(3)), "pings resume once inference does"
            assert stop_agent(agent, tmp_path) == 0
        finally:
            flag.unlink(missing_ok=True)
            agent.kill()
            camera.stop()
            notify.sock.close()
