"""The publisher against a real Mosquitto broker and a real SQLite spool."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from mqtt_broker import MosquittoBroker, Received, Subscriber
from polling import wait_until
from spooled import spool_verdicts
from tcp_proxy import TcpProxy

from edge_inspector.config import MqttConfig, TlsConfig
from edge_inspector.errors import ConfigError
from edge_inspector.outbox.publisher import Publisher
from edge_inspector.outbox.spool import Spool

REPO = Path(__file__).resolve().parents[2]
ROOT = "test/s1"
WILL = b'{"state": "offline", "by": "will"}'


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as running:
        yield running


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20) as opened:
        yield opened


def _config(broker: MosquittoBroker, **overrides: Any) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, prefix="test", **overrides)


def _publisher(broker: MosquittoBroker, spool: Spool, **kwargs: Any) -> Publisher:
    config = kwargs.pop("config", None) or _config(broker)
    kwargs.setdefault("status_offline", WILL)
    return Publisher(config, station="s1", spool=spool, **kwargs)


def _seqs(messages: list[Received], topic: str = f"{ROOT}/verdict") -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages if m.topic == topic]


def test_spooled_messages_arrive_in_order_with_properties(broker: MosquittoBroker, spool: Spool) -> None:
    publisher = _publisher(broker, spool)
    # spooled before the publisher starts, as after a restart
    seqs = spool_verdicts(publisher, 5, heatmap=lambda seq: b"\xff\xd8jpeg" + bytes([seq]) if seq % 2 else None)
    expected = [m for seq in seqs for m in [("verdict", seq)] + ([("heatmap", seq)] if seq % 2 else [])]
    with Subscriber(broker.host, broker.port, f"{ROOT}/+") as sub, publisher:
        got = sub.wait_for(len(expected))
        assert publisher.flush(5.0)
    kinds = [
        ("verdict", json.loads(m.payload)["seq"]) if m.topic.endswith("verdict") else ("heatmap", m.payload[-1])
        for m in got
    ]
    assert kinds == expected
    heatmap = next(m for m in got if m.topic == f"{ROOT}/heatmap")
    assert heatmap.properties["ContentType"] == "image/jpeg"
    assert heatmap.properties["UserProperty"] == [("seq", "1")]
    verdict = next(m for m in got if m.topic == f"{ROOT}/verdict")
    assert verdict.properties["ContentType"] == "application/json"
    assert verdict.qos == 1
    assert spool.depth() == {"verdicts": 0, "heatmaps": 0, "bytes": 0}
    stats = publisher.stats()
    assert stats["published"] == stats["acked"] == len(expected)
    assert stats["inflight"] == 0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_window_of_one_keeps_order(broker: MosquittoBroker, spool: Spool, protocol: str) -> None:
    config = _config(broker, max_inflight=1, protocol=protocol)
    with (
        Subscriber(broker.host, broker.port, f"{ROOT}/verdict") as sub,
        _publisher(broker, spool, config=config) as pub,
    ):
        assert wait_until(lambda: pub.connected)
        seqs = spool_verdicts(pub, 30)
        assert _seqs(sub.wait_for(30)) == seqs
        assert pub.flush(5.0)


def test_last_will_is_published_when_the_agent_dies(broker: MosquittoBroker, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from edge_inspector.config import MqttConfig
        from edge_inspector.outbox.publisher import Publisher
        from edge_inspector.outbox.spool import Spool

        config = MqttConfig(host="{broker.host}", port={broker.port}, prefix="test")
        spool = Spool(Path(sys.argv[1]), max_bytes=1 << 20)
        pub = Publisher(config, station="s1", spool=spool, status_offline={WILL!r},
                        on_connected=lambda: pub.publish_status(b"online"))
        pub.start()
        deadline = time.monotonic() + 10
        while not pub.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        print("connected" if pub.connected else "not connected", flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", script, str(tmp_path / "spool.sqlite")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env) as agent:
        try:
            with Subscriber(broker.host, broker.port, f"{ROOT}/status") as sub:
                assert agent.stdout is not None and agent.stdout.readline() == b"connected\n"
                assert sub.wait_until(lambda ms: any(m.payload == b"online" for m in ms))
                agent.kill()  # no clean disconnect: the broker must publish the will
                agent.wait(5)
                got = sub.wait_until(lambda ms: ms[-1].payload == WILL, timeout=5)
                assert got[-1].payload == WILL
        finally:
            agent.kill()
    with Subscriber(broker.host, broker.port, f"{ROOT}/status") as late:
        retained = late.wait_for(1, timeout=5)
        assert [(m.payload, m.retain) for m in retained] == [(WILL, True)]


def test_broker_outage_loses_nothing_and_keeps_order(spool: Spool) -> None:
    with MosquittoBroker(persistence=True) as broker:
        # A persistent session: the broker queues QoS 1 messages for the test while it reconnects.
        sub = Subscriber(broker.host, broker.port, f"{ROOT}/verdict", session_expiry=300)
        pub = _publisher(broker, spool)
        try:
            pub.start()
            before = spool_verdicts(pub, 5)
            assert _seqs(sub.wait_for(5)) == before
            assert pub.flush(5.0)

            port = broker.port
            busy = spool_verdicts(pub, 200)  # the sender may be in the middle of these...
            broker.stop()  # ...when the broker goes away (test_rows_in_flight_... makes sure some are)
            assert wait_until(lambda: not pub.connected, 5)
            during = spool_verdicts(pub, 10)
            time.sleep(0.3)  # the sender sees the spool but has nowhere to send
            assert spool.depth()["verdicts"] >= 10
            assert pub.last_error is not None

            broker.start()
            assert broker.port == port
            wanted = set(before + busy + during)
            got = sub.wait_until(lambda ms: wanted <= set(_seqs(ms)), timeout=15)
            seqs = _seqs(got)
            assert wanted <= set(seqs), f"missing {sorted(wanted - set(seqs))}"
            first_seen = list(dict.fromkeys(seqs))  # duplicates allowed, first occurrences in order
            assert first_seen == sorted(first_seen)
            assert pub.flush(5.0)
            assert pub.stats()["reconnects"] >= 1
            assert pub.last_error is None
        finally:
            pub.stop()
            sub.close()


def test_rows_in_flight_when_the_connection_drops_are_sent_again(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_inspector")
    with MosquittoBroker() as broker:
        pub = _publisher(broker, spool)
        try:
            pub.start()
            assert wait_until(lambda: pub.connected)
            broker.pause()  # connected, but nothing will be acknowledged
            spool_verdicts(pub, 3)
            assert wait_until(lambda: pub.stats()["inflight"] == 3)  # handed to paho, unanswered
            broker.kill()
            assert wait_until(lambda: not pub.connected)
            assert any("3 unacknowledged message(s) will be sent again" in r.getMessage() for r in caplog.records)
            assert spool.depth()["verdicts"] == 3 and pub.stats()["acked"] == 0
            broker.start()  # same port: paho reconnects by itself
            assert pub.flush(30)  # the broker acknowledged all three: they were sent again
            assert wait_until(lambda: pub.stats()["acked"] == 3)  # counted just after the delete
            assert pub.stats()["published"] >= 6 and pub.stats()["inflight"] == 0
        finally:
            pub.stop()


def test_stop_publishes_retained_offline_and_is_idempotent(broker: MosquittoBroker, spool: Spool) -> None:
    holder: list[Publisher] = []
    pub = _publisher(broker, spool, on_connected=lambda: holder[0].publish_status(b"online"))
    holder.append(pub)
    with Subscriber(broker.host, broker.port, f"{ROOT}/status") as sub:
        pub.start()
        assert sub.wait_until(lambda ms: any(m.payload == b"online" for m in ms))
        pub.stop(timeout=5.0, final_status=b"offline, cleanly")
        pub.stop()
        assert not pub.connected
        got = sub.wait_until(lambda ms: ms[-1].payload == b"offline, cleanly", timeout=5)
        assert [m.payload for m in got] == [b"online", b"offline, cleanly"]  # and no will
    with Subscriber(broker.host, broker.port, f"{ROOT}/status") as late:
        assert [(m.payload, m.retain) for m in late.wait_for(1, timeout=5)] == [(b"offline, cleanly", True)]
    assert pub.publish_status(b"late") is False


def test_commands_reach_the_handler(broker: MosquittoBroker, spool: Spool) -> None:
    received: list[tuple[str, bytes]] = []
    arrived = threading.Event()

    def on_command(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        arrived.set()

    config = _config(broker, commands=True)
    with _publisher(broker, spool, config=config, on_command=on_command) as pub:
        assert wait_until(lambda: pub.connected)
        # The subscription is made in on_connect; retry until the broker has it.
        for _ in range(50):
            mqtt_publish.single(
                f"{ROOT}/cmd/trigger", b'{"part_id": "P-1"}', qos=1, hostname=broker.host, port=broker.port
            )
            if arrived.wait(0.2):
                break
        assert received[0] == (f"{ROOT}/cmd/trigger", b'{"part_id": "P-1"}')
        arrived.clear()
        mqtt_publish.single(f"{ROOT}/cmd/reload", b"", qos=1, hostname=broker.host, port=broker.port)
        assert arrived.wait(5)
        assert received[-1] == (f"{ROOT}/cmd/reload", b"")


def test_refused_connection_is_logged_once_without_the_password(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_inspector")
    secret = "s3cret-Pa55word"
    with MosquittoBroker(extra_config=["allow_anonymous false"]) as broker:
        config = _config(broker, username="line7", password=secret)
        with _publisher(broker, spool, config=config) as pub:
            spool_verdicts(pub, 2)
            assert wait_until(lambda: pub.last_error is not None and "refused" in pub.last_error, 5)
            # a second refused attempt (the backoff starts at 1 s), which must not be logged again
            assert wait_until(lambda: broker.log().count("not authorised") >= 2, 15), broker.log()
            assert not pub.connected
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    assert secret not in caplog.text
    assert spool.depth()["verdicts"] == 2  # kept for when the credentials are fixed


def test_unreachable_broker_keeps_the_spool_and_stops_quickly(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge_inspector")
    with MosquittoBroker() as broker:
        port = broker.port
        broker.stop()  # nothing listens on the port now
        config = MqttConfig(host=broker.host, port=port, prefix="test")
        pub = Publisher(config, station="s1", spool=spool, status_offline=WILL)
        pub.start()
        spool_verdicts(pub, 3)
        assert wait_until(lambda: pub.last_error is not None, 5)
        assert "cannot connect to the broker" in (pub.last_error or "")
        assert "refused" in (pub.last_error or "").lower()  # the reason, from probing the port
        assert not pub.flush(0.2)
        pub.stop(timeout=2.0)
        # nothing of the publisher runs on: neither its sender nor paho's network thread
        assert not [t.name for t in threading.enumerate() if t.name.startswith(("edge-inspector-sender", "paho-"))]
    assert spool.depth()["verdicts"] == 3
    assert sum("cannot connect" in r.getMessage() for r in caplog.records) == 1


def test_missing_tls_files_are_a_config_error(tmp_path: Path, spool: Spool) -> None:
    config = MqttConfig(tls=TlsConfig(ca_file=tmp_path / "missing-ca.pem"))
    with pytest.raises(ConfigError, match="mqtt.tls"):
        Publisher(config, station="s1", spool=spool, status_offline=WILL)


def test_qos_0_rows_written_into_a_dying_connection_are_sent_again(broker: MosquittoBroker, spool: Spool) -> None:
    """QoS 0 messages paho wrote to the socket in the moment before a connection died reach the broker anyway."""
    with (
        TcpProxy(broker.host, broker.port) as link,
        Subscriber(broker.host, broker.port, f"{ROOT}/verdict") as sub,
    ):
        config = MqttConfig(host=link.host, port=link.port, prefix="test", qos=0, keepalive_s=60)
        with _publisher(broker, spool, config=config) as pub:
            assert wait_until(lambda: pub.connected)
            before = spool_verdicts(pub, 3)
            assert _seqs(sub.wait_for(3)) == before
            link.swallow()  # from here the broker reads nothing the agent writes
            lost = spool_verdicts(pub, 5)
            assert wait_until(lambda: pub.stats()["published"] >= 8)  # paho wrote them all to the socket
            assert wait_until(lambda: link.swallowed > 0)
            link.cut()  # the agent learns the connection is gone
            got = sub.wait_until(lambda ms: set(lost) <= set(_seqs(ms)), timeout=20)
            assert set(lost) <= set(_seqs(got)), f"never delivered: {sorted(set(lost) - set(_seqs(got)))}"
            assert pub.flush(10)
