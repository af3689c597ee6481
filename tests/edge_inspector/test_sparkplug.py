"""Sparkplug B output, decoded by an independent implementation (pysparkplug), against a real Mosquitto.

pysparkplug is installed without its dependencies (``make test`` does it):
it pins paho-mqtt < 2, and only its payload decoders are used here.
"""

from __future__ import annotations

import signal
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from agent_process import STATION, agent_config, start_agent, stop_agent, video
from mqtt_broker import MosquittoBroker, Received, Subscriber
from paho.mqtt.enums import CallbackAPIVersion
from polling import wait_until
from spooled import spool_verdicts
from tcp_proxy import TcpProxy

from edge_inspector.config import MqttConfig
from edge_inspector.messages import Latency, ModelRef, Verdict
from edge_inspector.outbox import Publisher, Spool
from edge_inspector.outbox.sparkplug import sparkplug_b_pb2 as pb
from edge_inspector.outbox.sparkplug.node import SparkplugNode
from edge_inspector.outbox.sparkplug.payloads import device_birth, device_metrics, node_birth, node_death, verdict_data

ps = pytest.importorskip("pysparkplug")

GROUP = "plant-1"
CLASSES = ["ok", "short", "spur"]
MODEL = ModelRef(name="pcb", version="3", sha256="ab" * 32, backend="onnxruntime", precision="int8")
DECODERS = {"NBIRTH": ps.NBirth, "DBIRTH": ps.DBirth, "DDATA": ps.DData, "NDEATH": ps.NDeath}


def _verdict(seq: int, camera: str = "top") -> Verdict:
    return Verdict(
        station=STATION,
        camera=camera,
        seq=seq,
        captured_at=datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc),
        label="short",
        is_defect=True,
        score=0.8,
        confidence=0.7,
        probabilities={"ok": 0.2, "short": 0.7, "spur": 0.1},
        threshold=0.5,
        model=MODEL,
        latency=Latency(preprocess_ms=1, inference_ms=2, postprocess_ms=1, total_ms=5.5, batch=1),
        heatmap=False,
    )


def test_births_declare_what_data_sends_by_alias() -> None:
    birth = ps.NBirth.decode(node_birth(7, MODEL, STATION))
    assert birth.seq == 0
    values = {m.name: m.value for m in birth.metrics}
    assert values["bdSeq"] == 7 and values["Node Control/Rebirth"] is False and values["Model/version"] == "3"
    assert ps.NDeath.decode(node_death(7)).bd_seq_metric.value == 7

    declared = ps.DBirth.decode(device_birth(1, CLASSES, seq=2))
    assert declared.seq == 2
    assert [m.name for m in declared.metrics] == [name for name, _ in device_metrics(CLASSES)]
    assert all(m.is_null for m in declared.metrics)  # no verdict yet
    by_alias = {m.alias: m for m in declared.metrics}
    assert len(by_alias) == len(declared.metrics)
    assert not set(by_alias) & {m.alias for m in ps.DBirth.decode(device_birth(0, CLASSES, seq=1)).metrics}

    raw = verdict_data(_verdict(41), 1, CLASSES, seq=3, historical=True)
    assert _by_alias_only(raw, set(by_alias))
    data = ps.DData.decode(raw, birth=declared)  # names and types from the birth
    assert data.seq == 3
    assert all(m.datatype == by_alias[m.alias].datatype and m.is_historical for m in data.metrics)
    named = {m.name: m.value for m in data.metrics}
    assert named["verdict/seq"] == 41 and named["verdict/label"] == "short" and named["verdict/is_defect"] is True
    assert named["verdict/probability/short"] == pytest.approx(0.7) and named["verdict/latency_ms"] == 5.5
    assert data.metrics[0].timestamp == int(_verdict(41).captured_at.timestamp() * 1000)
    assert "verdict/part_id" not in named or named["verdict/part_id"] is None


def _spooled_seqs(path: Path) -> set[int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return {int(row[0]) for row in db.execute("SELECT seq FROM messages WHERE kind = 'verdict'")}


def _by_alias_only(raw: bytes, declared: set[int]) -> bool:
    """Whether a DDATA's metrics carry only aliases the birth declared: no names, no types (on the wire)."""
    metrics = pb.Payload.FromString(raw).metrics
    return all(not m.HasField("name") and not m.HasField("datatype") and m.alias in declared for m in metrics)


def _decoded(messages: list[Received]) -> list[tuple[ps.Topic, object]]:
    """What the node published (the test's own NCMD left out), decoded; DDATA through its device's last DBIRTH,
    which must have declared every alias it uses."""
    out = []
    births: dict[str, ps.DBirth] = {}
    for message in messages:
        name = ps.Topic.from_str(message.topic)
        kind = str(name.message_type)
        if kind == "DDATA":
            birth = births[name.device_id]
            assert _by_alias_only(message.payload, {m.alias for m in birth.metrics})
            out.append((name, ps.DData.decode(message.payload, birth=birth)))
        elif kind in DECODERS:
            out.append((name, DECODERS[kind].decode(message.payload)))
            if kind == "DBIRTH":
                births[name.device_id] = out[-1][1]
    return out


def _sessions(decoded: list[tuple[ps.Topic, object]]) -> list[list[tuple[ps.Topic, object]]]:
    """The node's messages split at each NBIRTH (NDEATH left out)."""
    sessions: list[list[tuple[ps.Topic, object]]] = []
    for name, payload in decoded:
        if str(name.message_type) == "NBIRTH":
            sessions.append([])
        if str(name.message_type) != "NDEATH" and sessions:
            sessions[-1].append((name, payload))
    return sessions


def _bd_seq(payload: object) -> int:
    if isinstance(payload, ps.NDeath):
        return payload.bd_seq_metric.value
    return next(m.value for m in payload.metrics if m.name == "bdSeq")  # type: ignore[attr-defined]


def _rebirth(broker: MosquittoBroker) -> None:
    command = ps.NCmd(
        timestamp=ps.get_current_timestamp(),
        metrics=(ps.Metric(timestamp=None, name="Node Control/Rebirth", datatype=ps.DataType.BOOLEAN, value=True),),
    )
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(f"spBv1.0/{GROUP}/NCMD/{STATION}", command.encode(), qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_edge_node_across_rebirth_broker_restart_kill_and_restart(tmp_path: Path, tiny_bundle: Path) -> None:
    """The agent as a process through a rebirth, a broker restart (what was spooled meanwhile goes out as history),
    a SIGKILL (the will) and a restart (the next bdSeq); no verdict is lost.

    Held to 50 passes in a row beside a busy loop on both cores::

        t=tests/edge_inspector/test_sparkplug.py::test_edge_node_across_rebirth_broker_restart_kill_and_restart
        for c in 1 2; do (while :; do :; done) & done
        for i in $(seq 50); do .venv-edge/bin/python -m pytest -q "$t" || break; done; kill $(jobs -p)
    """
    cameras = [
        {"name": "top", "source": str(video(tmp_path, 12, "top.avi")), "fps": 150, "loop": True},
        {"name": "bottom", "source": str(video(tmp_path, 12, "bottom.avi")), "fps": 150, "loop": True},
    ]
    spool = tmp_path / "spool.sqlite"
    with (
        MosquittoBroker(persistence=True, extra_config=["queue_qos0_messages true"]) as broker,
        Subscriber(broker.host, broker.port, "spBv1.0/#", session_expiry=600) as sub,
    ):
        config = agent_config(
            tmp_path, tiny_bundle, broker, None, cameras=cameras, mqtt={"format": "sparkplug", "sparkplug_group": GROUP}
        )

        def count(kind: str) -> int:
            return sum(1 for m in sub.messages if f"/{kind}/" in m.topic)

        agent = start_agent(config, tmp_path)
        try:
            assert wait_until(lambda: count("DDATA") >= 300, timeout=90)  # seq wraps at 256
            _rebirth(broker)
            reborn = count("DDATA")
            assert wait_until(lambda: count("NBIRTH") == 2 and count("DDATA") > reborn + 2, timeout=30)
            broker.stop()
            assert wait_until(lambda: len(_spooled_seqs(spool)) >= 10, timeout=60)  # inspecting on, into the spool
            held_back = _spooled_seqs(spool)  # with QoS 0 rows the broker may have had before it stopped
            broker.start()
            assert wait_until(lambda: count("NBIRTH") == 3, timeout=60)
            sub.wait_until(lambda ms: _delivered(ms) >= held_back, timeout=60)
            deaths = count("NDEATH")  # a broker shutting down may send the will of the session it ends
            agent.send_signal(signal.SIGKILL)  # the broker sends the will
            agent.wait(timeout=30)
            assert wait_until(lambda: count("NDEATH") >= deaths + 1, timeout=30)
            first_run = _ddata(sub.messages)
            agent = start_agent(config, tmp_path)  # a restart: bdSeq goes on from the file beside the spool
            assert wait_until(lambda: count("NBIRTH") == 4 and _ddata(sub.messages) > first_run, timeout=60)
            assert stop_agent(agent, tmp_path) == 0  # a clean stop publishes NDEATH itself
            assert wait_until(lambda: count("NDEATH") >= deaths + 2, timeout=30)
        finally:
            agent.kill()
        received = sub.messages

    decoded = _decoded(received)
    births = [p for n, p in decoded if str(n.message_type) == "NBIRTH"]
    deaths = [p for n, p in decoded if str(n.message_type) == "NDEATH"]
    bd = [_bd_seq(b) for b in births]
    assert bd[1] == bd[0]  # a rebirth is the same MQTT session
    assert bd[2] != bd[1]  # the broker restart made a new session
    death_seqs = [_bd_seq(d) for d in deaths]
    assert bd[2] in death_seqs  # the will (SIGKILL) names the session it ends
    assert bd[3] == (bd[2] + 1) % 256 and death_seqs[-1] == bd[3]  # restarted: next bdSeq; its clean stop, last
    assert set(death_seqs) <= {bd[1], bd[2], bd[3]}  # a broker shutting down may also send the first session's

    for session in _sessions(decoded):
        kinds = [str(n.message_type) for n, _ in session]
        assert kinds[:3] == ["NBIRTH", "DBIRTH", "DBIRTH"] and set(kinds[3:]) <= {"DDATA"}
        seqs = [p.seq for _, p in session]  # type: ignore[attr-defined]
        assert seqs == [i % 256 for i in range(len(seqs))]  # 0 at birth, one more each message, wrapping
        declared = {n.device_id: {m.alias: m for m in p.metrics} for n, p in session if str(n.message_type) == "DBIRTH"}
        assert set(declared) == {"top", "bottom"}
        for name, payload in session[3:]:
            for metric in payload.metrics:  # type: ignore[attr-defined]
                assert metric.name == declared[name.device_id][metric.alias].name
    assert len(_sessions(decoded)[0]) > 256

    sessions = _sessions(decoded)
    before_restart = set(_verdict_seqs(sessions[0])) | set(_verdict_seqs(sessions[1]))
    after_restart = _verdict_seqs(sessions[2])
    assert held_back - before_restart <= set(after_restart)  # what waited in the spool went out after the restart...
    assert all(after_restart[seq] for seq in held_back & set(after_restart))  # ...marked as history
    assert held_back <= _delivered(received)


def _delivered(messages: list[Received]) -> set[int]:
    """The agent's verdict ``seq`` of every DDATA, read through the aliases its device's last DBIRTH declared."""
    seqs = set()
    for name, payload in _decoded([m for m in messages if "/DBIRTH/" in m.topic or "/DDATA/" in m.topic]):
        if str(name.message_type) == "DDATA":
            seqs.add(next(m.value for m in payload.metrics if m.name == "verdict/seq"))  # type: ignore[attr-defined]
    return seqs


def _verdict_seqs(session: list[tuple[ps.Topic, object]]) -> dict[int, bool]:
    """The verdict ``seq`` of each DDATA in a session, and whether it was marked historical."""
    return {
        next(m.value for m in p.metrics if m.name == "verdict/seq"): p.metrics[0].is_historical  # type: ignore[attr-defined]
        for n, p in session
        if str(n.message_type) == "DDATA"
    }


def _ddata(messages: list[Received]) -> int:
    return sum(1 for m in messages if "/DDATA/" in m.topic)


def test_ddata_written_into_a_dying_connection_goes_again_as_history(tmp_path: Path) -> None:
    """DDATA is QoS 0: what paho wrote just before the connection died is sent again, historical, after it."""
    node = SparkplugNode(
        group=GROUP, station=STATION, cameras=["top"], model=MODEL, classes=CLASSES, bd_seq_file=tmp_path / "bdseq"
    )
    config = MqttConfig(host="127.0.0.1", port=1, format="sparkplug", sparkplug_group=GROUP)
    with (
        MosquittoBroker() as broker,
        TcpProxy(broker.host, broker.port) as link,
        Subscriber(broker.host, broker.port, "spBv1.0/#") as sub,
        Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20) as spool,
    ):
        config = config.model_copy(update={"host": link.host, "port": link.port})
        with Publisher(config, station=STATION, spool=spool, status_offline=b"", sparkplug=node) as pub:
            assert wait_until(lambda: pub.connected)
            # the first as an agent of schema version 2 spooled it, before an upgrade: it goes out all the same
            before = spool_verdicts(pub, 3, lambda seq: _verdict_json(seq, 2 if seq == 1 else 3))
            assert sub.wait_until(lambda ms: _delivered(ms) >= set(before))
            link.swallow()  # the broker reads nothing more of this connection
            lost = spool_verdicts(pub, 5, _verdict_json)
            assert wait_until(lambda: pub.stats()["published"] >= 8 and link.swallowed > 0)
            link.cut()
            got = sub.wait_until(lambda ms: _delivered(ms) >= set(lost), timeout=20)
            assert set(lost) <= _delivered(got), f"never delivered: {sorted(set(lost) - _delivered(got))}"
            assert pub.flush(10)
    again = _sessions(_decoded(got))[1]
    resent = [p for n, p in again if str(n.message_type) == "DDATA"]
    assert {m.value for p in resent for m in p.metrics if m.name == "verdict/seq"} >= set(lost)
    assert all(m.is_historical for p in resent for m in p.metrics)


def _verdict_json(seq: int, schema_version: int = 3) -> bytes:
    return _verdict(seq).model_copy(update={"schema_version": schema_version}).model_dump_json().encode()
