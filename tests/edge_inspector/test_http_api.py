"""The HTTP API of a running agent: POST /inspect against the MQTT verdicts, its refusals, /status, /metrics."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from agent_process import STATION, agent_config, start_agent, stop_agent, verdicts_of
from mqtt_broker import MosquittoBroker, Subscriber, free_port
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families

from edge_inspector.capture.mailbox import FrameMailbox
from edge_inspector.config import load_config
from edge_inspector.counters import Counters
from edge_inspector.messages import InspectResult, Status
from edge_inspector.web.front import WebFront
from trainer.synth.video import render_frames

TOKEN = "line-7-secret"
BOARDS = 3


def _boards(folder: Path) -> list[Path]:
    """PNG files of synthetic boards: the agent's camera reads the folder, the test posts the same files."""
    folder.mkdir()
    frames, _ = render_frames(BOARDS, size=64, seed=11, frame_size=128)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(folder / f"board{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return paths


def _curl(port: int, *args: str) -> tuple[int, Any]:
    """``curl`` against the agent: (HTTP status, JSON body)."""
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args, f"http://127.0.0.1:{port}/inspect"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code), json.loads(body)


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    """(status, JSON or bytes) of one request; the body may be shorter than a declared Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.send(body)  # the server may refuse before reading it all: its answer is still there
        response = conn.getresponse()
        data = response.read()
        is_json = response.getheader("content-type", "").startswith("application/json")
        return response.status, json.loads(data) if is_json else data
    finally:
        conn.close()


def _chunked(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """POST /inspect with a chunked body (no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", "/inspect")
        for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for at in range(0, len(body), 64 * 1024):
                piece = body[at : at + 64 * 1024]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _first_event_id(port: int, last_seen: int | None = None) -> int:
    """The id of the first verdict event of ``GET /live/events``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/live/events", headers={"Last-Event-ID": str(last_seen)} if last_seen else {})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
        while line := response.fp.readline():
            if line.startswith(b"id: "):
                return int(line[4:])
        raise AssertionError("the event stream ended without a verdict")
    finally:
        conn.close()


def _same_verdict(posted: dict[str, Any], published: dict[str, Any]) -> None:
    for key in ("station", "label", "is_defect", "threshold", "model"):
        assert posted[key] == published[key], key
    assert posted["score"] == pytest.approx(published["score"], abs=1e-5)
    assert posted["probabilities"].keys() == published["probabilities"].keys()
    for name, p in published["probabilities"].items():
        assert posted["probabilities"][name] == pytest.approx(p, abs=1e-5), name


def test_inspect_answers_as_mqtt_does_and_refuses_bad_input(tmp_path: Path, tiny_bundle: Path) -> None:
    boards = _boards(tmp_path / "boards")
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    auth = f"Authorization: Bearer {TOKEN}"
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/verdict") as sub:
        config = agent_config(
            tmp_path,
            tiny_bundle,
            broker,
            tmp_path / "boards",
            http={"port": port, "token_file": str(tmp_path / "token"), "max_upload_mb": 1},
        )
        agent = start_agent(config, tmp_path)
        try:
            published = sorted(verdicts_of(sub.wait_for(BOARDS, timeout=60)), key=lambda v: v.seq)

            # the done-when of the issue, literally: curl -F image=@board.png
            for board, verdict in zip(boards, published, strict=True):
                code, answer = _curl(port, "-H", auth, "-F", f"image=@{board}")
                assert code == 200, answer
                result = InspectResult.model_validate(answer)
                assert result.verdict.seq == 0 and result.verdict.camera == "http" and not result.verdict.heatmap
                _same_verdict(answer["verdict"], verdict.model_dump(mode="json"))
                heatmap = cv2.imdecode(np.frombuffer(base64.b64decode(result.heatmap_jpeg), np.uint8), 1)
                assert heatmap.shape == (128, 128, 3)
            code, answer = _curl(port, "-H", auth, "-H", "Content-Type: image/png", "--data-binary", f"@{boards[0]}")
            assert code == 200  # the raw body works too
            _same_verdict(answer["verdict"], published[0].model_dump(mode="json"))

            png = boards[0].read_bytes()
            token = {"Authorization": f"Bearer {TOKEN}"}
            refusals = [
                (401, {}, png, {"Content-Type": "image/png"}),
                (401, {"Authorization": "Bearer wrong"}, png, {"Content-Type": "image/png"}),
                (400, token, b"", {"Content-Type": "image/png"}),
                (415, token, b"just text, no picture", {"Content-Type": "image/png"}),
                (415, token, png, {"Content-Type": "text/plain"}),
                (400, token, png[: len(png) // 2], {"Content-Type": "image/png"}),  # truncated
                (400, token, b"--x\r\n\r\n--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}),
            ]
            for status, auth_header, body, headers in refusals:
                got, answer = _request(port, "POST", "/inspect", body, {**auth_header, **headers})
                assert got == status, (status, headers, answer)
                assert isinstance(answer["detail"], str) and "\n" not in answer["detail"]
            # a 100 MB upload: refused from its Content-Length, before the body is read
            got, answer = _request(
                port,
                "POST",
                "/inspect",
                b"\0" * 1024 * 1024,
                {**token, "Content-Type": "image/png", "Content-Length": str(100 * 1024 * 1024)},
            )
            assert got == 413 and "over the limit" in answer["detail"]

            for lying in ({}, {"Content-Length": "10"}):  # chunked, and chunked under a small Content-Length
                got, answer = _chunked(port, b"\0" * (2 * 1024 * 1024), {**token, "Content-Type": "image/png", **lying})
                assert got == 413, answer  # counted as it arrives, whatever the framing says

            # the live view's events: the feed from the start, or after the id a reconnecting browser last saw
            assert _first_event_id(port) == 1
            assert _first_event_id(port, last_seen=2) == 3
            assert _first_event_id(port, last_seen=99) == 1  # an id from before a restart: from the start

            # the loop lived through all of it
            code, answer = _curl(port, "-H", auth, "-F", f"image=@{boards[1]}")
            assert code == 200
            _same_verdict(answer["verdict"], published[1].model_dump(mode="json"))
            got, status_body = _request(port, "GET", "/status")
            status = Status.model_validate(status_body)
            assert status.counters["http_inspections"] == BOARDS + 2 and status.counters["inferred"] >= BOARDS
            got, text = _request(port, "GET", "/metrics")
            families = {f.name: f for f in text_string_to_metric_families(text.decode())}
            assert families["edge_inspector_http_inspections"].samples[0].value == BOARDS + 2
            got, schema = _request(port, "GET", "/openapi.json")
            assert "multipart/form-data" in schema["paths"]["/inspect"]["post"]["requestBody"]["content"]
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
        received = sub.messages
    assert all(v.camera == "cam0" for v in verdicts_of(received))  # posted images are not published
    assert len(verdicts_of(received)) == BOARDS


def test_full_queue_answers_503_and_slow_answers_504(tmp_path: Path, tiny_bundle: Path) -> None:
    """A WebFront whose model never takes the queued images: the queue bound and the timeout answer for it."""
    port = free_port()
    path = tmp_path / "agent.yaml"
    path.write_text(
        json.dumps(
            {
                "station": STATION,
                "camera": {"source": str(tmp_path)},
                "model": {"bundle": str(tiny_bundle)},
                "http": {"port": port, "max_pending": 2, "timeout_s": 2},
            }
        )
    )
    mailbox = FrameMailbox()
    stopping = threading.Event()
    front = WebFront(
        load_config(path, environ={}),
        mailbox,
        lambda: Status(station=STATION, state="online", at="2026-01-01T00:00:00Z"),
        Counters(),
        stopping,
    )
    front.start()
    try:
        png = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
        answers: list[tuple[int, Any]] = []

        def post() -> None:
            answers.append(_request(port, "POST", "/inspect", png, {"Content-Type": "image/png"}))

        waiting = [threading.Thread(target=post) for _ in range(2)]
        for thread in waiting:
            thread.start()
        assert wait_until(lambda: mailbox.waiting("http") == 2, timeout=10)
        status, answer = _request(port, "POST", "/inspect", png, {"Content-Type": "image/png"})
        assert status == 503 and "2 images already wait" in answer["detail"]
        for thread in waiting:
            thread.join(timeout=30)
        assert sorted(code for code, _ in answers) == [504, 504]
        stopping.set()
        status, answer = _request(port, "POST", "/inspect", png, {"Content-Type": "image/png"})
        assert status == 503 and "stopping" in answer["detail"]
    finally:
        front.close()


def test_taken_port_is_a_clear_start_error(tmp_path: Path, tiny_bundle: Path) -> None:
    _boards(tmp_path / "boards")
    with MosquittoBroker() as broker, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = start_agent(
            agent_config(tmp_path, tiny_bundle, broker, tmp_path / "boards", http={"port": port}), tmp_path
        )
        assert agent.wait(timeout=60) != 0
    log = (tmp_path / "agent.log").read_text()
    assert f"http: cannot listen on 127.0.0.1:{port}" in log and "Traceback" not in log
