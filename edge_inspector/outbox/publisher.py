"""The MQTT side of the agent: the broker connection, the spool it drains, the status it publishes (paho-mqtt 2.x).

Delivery is at least once (the package's docstring says how); paho reconnects by itself.

``status`` is retained, QoS 1. The broker publishes the ``offline`` last will
when the connection dies; :meth:`Publisher.stop` publishes offline itself,
since a clean disconnect does not trigger the will.

With Sparkplug B (:mod:`edge_inspector.outbox.sparkplug`) the will is the node's
NDEATH instead, births go out on every connection before the spool drains,
an NCMD rebirth is answered, and the JSON ``status`` is not published (one
will per connection: NBIRTH and NDEATH say whether the station is there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_inspector.config import MqttConfig
from edge_inspector.messages import CONTENT_TYPES, ModelRef, topics
from edge_inspector.outbox.mqtt_client import ConnectionProblems, make_client, message_properties, probe_broker
from edge_inspector.outbox.sender import SpoolSender
from edge_inspector.outbox.sparkplug.node import SparkplugNode
from edge_inspector.outbox.spool import Kind, Outgoing, Spool, SpoolBatch

__all__ = ["PublishBatch", "Publisher"]

log = logging.getLogger(__name__)


class PublishBatch:
    """The messages of one :meth:`Publisher.batch`: ``next_seq`` for each verdict, then ``add`` its messages."""

    def __init__(self, rows: SpoolBatch, outgoing: Callable[[Kind, bytes], Outgoing]) -> None:
        self._rows = rows
        self._outgoing = outgoing

    def next_seq(self) -> int:
        """The next ``seq``: monotonic per station, on disk with the batch."""
        return self._rows.next_seq()

    def add(self, kind: Kind, payload: bytes) -> None:
        """A verdict or heatmap under the last ``seq`` handed out, on this station's topic and QoS."""
        self._rows.add(self._outgoing(kind, payload))


class Publisher:
    """Connects to the broker, keeps reconnecting, and drains the spool in order.

    Args:
        config: broker, credentials, TLS, QoS and in-flight window.
        station: station id, part of every topic.
        spool: where messages wait until acknowledged.
        client_id: MQTT client id; default ``config.client_id`` or ``edge-inspector-<station>``.
        on_command: called with (topic, payload) for ``cmd/trigger`` and ``cmd/reload``
            when ``config.commands`` is on; runs on paho's network thread.
        status_offline: payload of the retained last will on ``status``.
        sparkplug: the Edge Node, with ``mqtt.format: sparkplug``.
        on_connected: called after every (re)connection, on paho's network thread
            (the agent publishes its ``online`` status there).

    Raises:
        ConfigError: the TLS files cannot be loaded.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        station: str,
        spool: Spool,
        client_id: str | None = None,
        on_command: Callable[[str, bytes], None] | None = None,
        status_offline: bytes,
        sparkplug: SparkplugNode | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.topics = topics(config.prefix, station)
        self._spool = spool
        self._on_command = on_command
        self._on_connected = on_connected
        self._status_offline = status_offline
        self._sparkplug = sparkplug
        self._v5 = config.protocol == "5"
        self.client_id = client_id or config.client_id or f"edge-inspector-{station}"

        self._lock = threading.Lock()  # guards the counters below
        self._started = self._stopped = False
        self._problems = ConnectionProblems()
        self._counts = {"undurable": 0, "lost": 0}
        self._disk_full_since: float | None = None
        self._connects = 0
        self._client = self._make_client()
        self._sender = SpoolSender(
            spool,
            self._client,
            window=config.max_inflight,
            v5=self._v5,
            barrier_topic=self.topics["barrier"],
            barrier_timeout=config.keepalive_s,
            sparkplug=sparkplug,
        )

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.config, self.client_id)
        if self._sparkplug is not None:
            client.will_set(*self._sparkplug.will(), qos=1, retain=False)
        else:
            will_props = message_properties(self._v5, PacketTypes.WILLMESSAGE, CONTENT_TYPES["status"])
            client.will_set(self.topics["status"], self._status_offline, qos=1, retain=True, properties=will_props)
        client.on_log = self._problems.paho_log
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        return client

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        """Start connecting (in the background) and the sender thread."""
        if self._started:
            return
        self._started = True
        cfg = self.config
        log.info("mqtt: connecting to %s:%d as %s (MQTT %s)", cfg.host, cfg.port, self.client_id, cfg.protocol)
        self._sender.start()
        # Sparkplug B wants a clean session on every connection; paho's MQTT 5 default keeps it after the first
        clean = {"clean_start": True} if self._sparkplug is not None and self._v5 else {}
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s, **clean)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0, final_status: bytes | None = None) -> None:
        """Stop sending, publish ``final_status`` (default: the will's payload) retained, disconnect. Idempotent.

        ``timeout`` bounds the waits for the sender and the status's PUBACK. Unacknowledged rows stay spooled.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._sender.stop(timeout)
        if not self._started:
            return
        if self.connected and not self._sender.settle(max(0.1, deadline - time.monotonic())):
            log.warning("mqtt: the broker did not confirm the last QoS 0 messages; they go again after a restart")
        if self.connected:
            if self._sparkplug is not None:
                info = self._sparkplug.death(self._client)
            else:
                info = self._publish_status(self._status_offline if final_status is None else final_status)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:  # wait_for_publish raises only when it was never sent
                log.debug("mqtt: offline status not sent: %s", exc)
            if not info.is_published():
                log.warning("mqtt: the broker did not acknowledge the offline status; the last will stays")
        self._client.disconnect()
        self._client.loop_stop()
        self._sender.apply_answers()  # what the broker answered after the sender stopped
        log.info("mqtt: disconnected (%s)", self.stats())

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- public API ----------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection and it is still up."""
        return self._sender.up

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or was refused; None while connected."""
        return self._problems.last

    @property
    def disk_full(self) -> bool:
        """Whether the last message could not be spooled for a full disk (it went out undurable)."""
        return self._disk_full_since is not None

    def stats(self) -> dict[str, int]:
        """The sender's counters (:meth:`SpoolSender.stats`), ``reconnects``, and while the disk is full
        ``undurable`` (published without a spool row) and ``lost`` (neither spooled nor sent)."""
        with self._lock:
            return {**self._sender.stats(), **self._counts, "reconnects": max(0, self._connects - 1)}

    def new_model(self, model: ModelRef, classes: Sequence[str]) -> None:
        """Sparkplug: a reloaded model is born again now when connected, else with the next connection."""
        if self._sparkplug is not None:
            self._sparkplug.new_model(model, classes, self._client if self.connected else None)

    @contextmanager
    def batch(self) -> Iterator[PublishBatch]:
        """Spool verdicts and heatmaps on this station's topics and QoS, a ``seq`` each verdict, one transaction.

        ``with publisher.batch() as b: seq = b.next_seq(); b.add("verdict", payload)``;
        then the sender is woken. On a full disk the messages go straight to
        the broker instead, without durability (counted ``undurable``, or
        ``lost`` while disconnected), and the spool is tried again with the
        next batch.

        Raises:
            SpoolError: the spool cannot be written for another reason.
        """
        with self._spool.batch() as rows:
            yield PublishBatch(rows, self._outgoing)
        if rows.durable:
            if self._disk_full_since is not None:
                log.warning(
                    "spool %s: room again after %.0f s; messages are durable again",
                    self._spool.path,
                    time.monotonic() - self._disk_full_since,
                )
                self._disk_full_since = None
            self._sender.notify()
            return
        if self._disk_full_since is None:
            self._disk_full_since = time.monotonic()
            log.error("spool %s: the disk is full; publishing without durability until there is room", self._spool.path)
        for seq, message in rows.messages:
            self._publish_undurable(message, seq)

    def _outgoing(self, kind: Kind, payload: bytes) -> Outgoing:
        qos = self.config.qos if kind == "verdict" else self.config.heatmap_qos
        return Outgoing(kind, self.topics[kind], payload, qos, content_type=CONTENT_TYPES[kind])

    def _publish_undurable(self, message: Outgoing, seq: int) -> None:
        sent = False
        if self.connected:
            try:
                sent = self._sender.publish(message, seq)[0].rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            except ValueError as exc:
                log.error("mqtt: cannot publish %s seq=%d: %s", message.kind, seq, exc)
        with self._lock:
            self._counts["undurable" if sent else "lost"] += 1

    def publish_status(self, payload: bytes) -> bool:
        """Publish a status payload, QoS 1, retained; False (skipped, not queued) when not connected or Sparkplug."""
        if not self.connected or self._sparkplug is not None:
            return False
        return self._publish_status(payload).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publish_status(self, payload: bytes) -> mqtt.MQTTMessageInfo:
        props = message_properties(self._v5, PacketTypes.PUBLISH, CONTENT_TYPES["status"])
        return self._client.publish(self.topics["status"], payload, qos=1, retain=True, properties=props)

    def flush(self, timeout: float) -> bool:
        """Wait until the spool is empty: True, or False when ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        while True:
            depth = self._spool.depth()
            if depth["verdicts"] == 0 and depth["heatmaps"] == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._sender.wait(min(remaining, 0.1))

    # -- paho callbacks (network thread) -----------------------------------
    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        if reason.is_failure:
            self._problems.report(f"{self.config.host}:{self.config.port} refused the connection: {reason}")
            return
        with self._lock:
            self._connects += 1
        if self._sparkplug is not None:  # births first: DDATA from the spool follows them
            client.subscribe(self._sparkplug.command_topic, qos=0)
            self._sparkplug.birth(client)
        self._sender.link_up()
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        self._problems.clear()
        if self.config.commands:
            client.subscribe([(self.topics["trigger"], 1), (self.topics["reload"], 1)])
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:  # a bug in the callback must not kill paho's network thread
                log.exception("mqtt: on_connected callback failed")

    def _next_session(self, client: mqtt.Client) -> None:
        """Sparkplug: the next connection's will carries the next ``bdSeq``."""
        if self._sparkplug is not None:
            self._sparkplug.next_session()
            client.will_set(*self._sparkplug.will(), qos=1, retain=False)

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        self._next_session(client)
        self._problems.report(
            f"cannot connect to the broker at {self.config.host}:{self.config.port}: {probe_broker(self.config)}; "
            "retrying (backoff up to 30 s)",
            logging.WARNING,
        )

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        self._next_session(client)
        was_connected = self._sender.up
        unacked = self._sender.link_down()
        if was_connected and not self._stopped:
            why = self._problems.lost_because(reason)
            self._problems.report(
                f"connection to {self.config.host}:{self.config.port} lost ({why}); "
                f"{unacked} unacknowledged message(s) will be sent again",
                logging.WARNING,
            )

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Properties | None
    ) -> None:
        self._sender.answer(mid, reason)

    def _on_unsubscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, _reasons: Any, _props: Properties | None
    ) -> None:
        self._sender.answer(mid, None)  # the barrier's UNSUBACK

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        node = self._sparkplug
        if node is not None and message.topic == node.command_topic:
            if node.rebirth_requested(bytes(message.payload)):
                node.birth(client)
            return
        if self._on_command is None or message.topic not in (self.topics["trigger"], self.topics["reload"]):
            return
        try:
            self._on_command(message.topic, bytes(message.payload))
        except Exception:  # a bug in the handler must not kill paho's network thread
            log.exception("mqtt: command handler failed for %s", message.topic)
