"""The MQTT side of the agent: forwards the spool to the broker with paho-mqtt 2.x.

At-least-once: a sender thread publishes spooled rows in ``id`` order, at most
``mqtt.max_inflight`` unacknowledged; a row leaves the spool only when the
broker acknowledges it (PUBACK/PUBCOMP; QoS 0 once paho took it). When the
connection drops, the in-flight bookkeeping is reset and every unacknowledged
row is sent again, in order, once paho has reconnected by itself. The MES may
thus see a message twice (paho also retransmits its own copies): the ``seq``
(in the verdict JSON; with MQTT v5 also a user property) lets it drop duplicates.

``status`` is retained, QoS 1. The broker publishes the ``offline`` last will
when the connection dies; :meth:`Publisher.stop` publishes offline itself,
since a clean disconnect does not trigger the will.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_inspector.config import MqttConfig
from edge_inspector.errors import ConfigError
from edge_inspector.messages import topics
from edge_inspector.priority import run_in_background
from edge_inspector.spool import Kind, Outgoing, Spool, SpoolError, SpoolFullError, SpoolItem

__all__ = ["Publisher"]

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(f"{__name__}.paho")

_IDLE_WAIT_S = 1.0  # the sender re-reads the spool at least this often, notified or not
_SOCKET_ERRORS = ("failed to receive on socket", "timeout on socket")
_CONTENT_TYPES: dict[str, str] = {"verdict": "application/json", "heatmap": "image/jpeg"}


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
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.topics = topics(config.prefix, station)
        self._spool = spool
        self._on_command = on_command
        self._on_connected = on_connected
        self._status_offline = status_offline
        self._v5 = config.protocol == "5"
        self.client_id = client_id or config.client_id or f"edge-inspector-{station}"

        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._stopped = False
        # Guarded by self._cond. Never call paho while holding it: paho holds its own locks in our callbacks.
        self._connected = False
        self._epoch = 0  # bumped on every disconnect: publishes of an older epoch are void
        self._cursor = 0  # last row id handed to paho in this epoch
        self._outstanding: dict[int, int] = {}  # paho mid -> spool row id, QoS >= 1, this epoch
        self._unmatched: dict[int, ReasonCode] = {}  # acks that beat the sender's registration of the mid
        self._dirty = False
        self._last_error: str | None = None
        self._socket_error: str | None = None
        self._counts = {"published": 0, "acked": 0, "rejected": 0, "invalid": 0, "undurable": 0, "lost": 0}
        self._disk_full_since: float | None = None
        self._ack_blocked = False  # acknowledged rows cannot be deleted (full disk); logged once
        self._acked: list[int] = []  # spool rows the broker acknowledged, deleted by the sender thread
        self._connects = 0
        self._client = self._make_client()

    # -- set-up ------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
        )
        client.on_log = self._on_log
        client.suppress_exceptions = True  # an exception in a callback is logged; the network thread lives on
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        elif cfg.password is not None:
            log.warning("mqtt: a password is set but no username; the password is not sent")
        if cfg.tls is not None:
            try:
                client.tls_set(
                    ca_certs=str(cfg.tls.ca_file),
                    certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                    keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(f"mqtt.tls: cannot load the CA or client certificate ({exc})") from exc
            client.tls_insecure_set(cfg.tls.insecure)
        will_props = self._props(PacketTypes.WILLMESSAGE, "application/json")
        client.will_set(self.topics["status"], self._status_offline, qos=1, retain=True, properties=will_props)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(cfg.max_inflight)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _props(self, packet_type: int, content_type: str, seq: int | None = None) -> Properties | None:
        if not self._v5:
            return None
        props = Properties(packet_type)
        props.ContentType = content_type
        if seq is not None:
            props.UserProperty = ("seq", str(seq))
        return props

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        """Start connecting (in the background) and the sender thread."""
        if self._sender is not None:
            return
        cfg = self.config
        log.info("mqtt: connecting to %s:%d as %s (MQTT %s)", cfg.host, cfg.port, self.client_id, cfg.protocol)
        self._sender = threading.Thread(target=self._send_loop, name="edge-inspector-sender", daemon=True)
        self._sender.start()
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0, final_status: bytes | None = None) -> None:
        """Stop sending, publish ``final_status`` (default: the will's payload) retained, disconnect. Idempotent.

        ``timeout`` bounds the waits for the sender and the status's PUBACK. Unacknowledged rows stay spooled.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self.notify()  # wake the sender so it sees the stop
        if self._sender is None:  # never started
            return
        self._sender.join(max(0.1, deadline - time.monotonic()))
        if self.connected:
            info = self._publish_status(self._status_offline if final_status is None else final_status)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:  # wait_for_publish raises only when it was never sent
                log.debug("mqtt: offline status not sent: %s", exc)
            if not info.is_published():
                log.warning("mqtt: the broker did not acknowledge the offline status; the last will stays")
        self._client.disconnect()
        self._client.loop_stop()
        self._delete_acked()  # what the broker acknowledged after the sender stopped
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
        return self._connected

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or was refused; None while connected."""
        return self._last_error

    @property
    def disk_full(self) -> bool:
        """Whether the last message could not be spooled for a full disk (it went out undurable)."""
        return self._disk_full_since is not None

    def stats(self) -> dict[str, int]:
        """Counters: ``published``, ``acked``, ``reconnects``, ``rejected`` (by the broker),
        ``invalid`` (unpublishable rows dropped), ``inflight``, and while the disk is full
        ``undurable`` (published without a spool row) and ``lost`` (neither spooled nor sent)."""
        with self._cond:
            return {**self._counts, "reconnects": max(0, self._connects - 1), "inflight": len(self._outstanding)}

    def notify(self) -> None:
        """Wake the sender: something was spooled."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def record(self, builders: Sequence[Callable[[int], Sequence[tuple[Kind, bytes]]]]) -> list[int]:
        """Hand out one ``seq`` per builder and spool the (kind, payload) pairs each builds for it.

        One transaction for the whole batch (:meth:`Spool.record`), on this
        station's topics and QoS; then the sender is woken. On a full disk the
        messages go straight to the broker instead, without durability (counted
        ``undurable``, or ``lost`` while disconnected), and the spool is tried
        again with the next batch.

        Raises:
            SpoolError: the spool cannot be written for another reason.
        """

        def outgoing(build: Callable[[int], Sequence[tuple[Kind, bytes]]]) -> Callable[[int], list[Outgoing]]:
            return lambda seq: [self._outgoing(kind, payload) for kind, payload in build(seq)]

        recorded = self._spool.record([outgoing(b) for b in builders])
        if recorded.durable:
            if self._disk_full_since is not None:
                log.warning(
                    "spool %s: room again after %.0f s; messages are durable again",
                    self._spool.path,
                    time.monotonic() - self._disk_full_since,
                )
                self._disk_full_since = None
            self.notify()
            return recorded.seqs
        if self._disk_full_since is None:
            self._disk_full_since = time.monotonic()
            log.error("spool %s: the disk is full; publishing without durability until there is room", self._spool.path)
        for seq, message in recorded.messages:
            self._publish_undurable(message, seq)
        return recorded.seqs

    def _outgoing(self, kind: Kind, payload: bytes) -> Outgoing:
        qos = self.config.qos if kind == "verdict" else self.config.heatmap_qos
        return Outgoing(kind, self.topics[kind], payload, qos, content_type=_CONTENT_TYPES[kind])

    def _publish_undurable(self, message: Outgoing, seq: int) -> None:
        props = self._props(PacketTypes.PUBLISH, message.content_type or "", seq)
        sent = self.connected and (
            self._client.publish(message.topic, message.payload, qos=message.qos, properties=props).rc
            == MQTTErrorCode.MQTT_ERR_SUCCESS
        )
        with self._cond:
            self._counts["undurable" if sent else "lost"] += 1

    def publish_status(self, payload: bytes) -> bool:
        """Publish a status payload, QoS 1, retained; False (skipped, not queued) when not connected."""
        if not self.connected:
            return False
        return self._publish_status(payload).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publish_status(self, payload: bytes) -> mqtt.MQTTMessageInfo:
        props = self._props(PacketTypes.PUBLISH, "application/json")
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
            with self._cond:
                self._cond.wait(min(remaining, 0.1))

    # -- paho callbacks (network thread) -----------------------------------
    def _problem(self, message: str, level: int = logging.ERROR) -> None:
        """Log a connection problem once per change of state."""
        if message != self._last_error:
            self._last_error = message
            log.log(level, "mqtt: %s", message)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        if reason.is_failure:
            self._problem(f"{self.config.host}:{self.config.port} refused the connection: {reason}")
            return
        with self._cond:
            self._connected = True
            self._connects += 1
            self._dirty = True
            self._cond.notify_all()
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        self._last_error = None
        if self.config.commands:
            client.subscribe([(self.topics["trigger"], 1), (self.topics["reload"], 1)])
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:  # a bug in the callback must not kill paho's network thread
                log.exception("mqtt: on_connected callback failed")

    def _on_log(self, _client: mqtt.Client, _userdata: Any, level: int, message: str) -> None:
        if message.startswith(_SOCKET_ERRORS):
            self._socket_error = message  # reported once, in the "connection lost" warning
        # paho 2.2 also reports "Client is not connected" as an error after every disconnect.
        noise = message.startswith(("Client is not connected", *_SOCKET_ERRORS))
        _paho_log.log(logging.DEBUG if noise else mqtt.LOGGING_LEVEL[level], "%s", message)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._problem(
            f"cannot connect to the broker at {self.config.host}:{self.config.port}: {self._diagnose()}; "
            "retrying (backoff up to 30 s)",
            logging.WARNING,
        )

    def _diagnose(self) -> str:
        """Why a connection attempt failed: paho swallows the error, so probe the port once."""
        try:
            with socket.create_connection((self.config.host, self.config.port), timeout=2.0):
                pass
        except OSError as exc:  # refused, unreachable, unknown host, timeout
            return exc.strerror or str(exc) or type(exc).__name__
        return "the port answers, so the TLS or MQTT handshake failed" + (
            " (check mqtt.tls)" if self.config.tls else ""
        )

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Properties | None
    ) -> None:
        with self._cond:
            was_connected = self._connected
            self._connected = False
            self._epoch += 1
            self._cursor = 0
            unacked = len(self._outstanding)
            self._outstanding.clear()
            self._unmatched.clear()
            self._cond.notify_all()
        if was_connected and not self._stopping.is_set():
            why, self._socket_error = (self._socket_error or str(reason)), None
            self._problem(
                f"connection to {self.config.host}:{self.config.port} lost ({why}); "
                f"{unacked} unacknowledged message(s) will be sent again",
                logging.WARNING,
            )

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Properties | None
    ) -> None:
        with self._cond:
            row = self._outstanding.pop(mid, None)
            if row is None:
                self._unmatched[mid] = reason
                return
            self._settle(row, reason)
            self._cond.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._on_command is None or message.topic not in (self.topics["trigger"], self.topics["reload"]):
            return
        try:
            self._on_command(message.topic, bytes(message.payload))
        except Exception:  # a bug in the handler must not kill paho's network thread
            log.exception("mqtt: command handler failed for %s", message.topic)

    def _settle(self, row: int, reason: ReasonCode | None) -> None:
        """The broker answered for ``row``: the sender deletes it, or it stays when refused. Holds self._cond.

        No disk I/O here: this runs on paho's network thread, and an fsync
        there would stall keepalives and acknowledgements.
        """
        if reason is not None and reason.is_failure:
            self._counts["rejected"] += 1
            log.error("mqtt: the broker refused spool row %d (%s); kept, retried after a reconnect", row, reason)
        else:
            self._acked.append(row)
            self._cond.notify_all()

    def _delete_acked(self) -> None:
        """Delete the rows the broker acknowledged, in one transaction (sender thread)."""
        with self._cond:
            rows, self._acked = self._acked, []
        if not rows:
            return
        try:
            self._spool.ack_many(rows)
        except SpoolFullError as exc:  # once per episode: on a full disk every delete fails
            if not self._ack_blocked:
                self._ack_blocked = True
                log.error("mqtt: %s; delivered rows stay (and go again) until the disk has room", exc)
            return
        except SpoolError as exc:
            log.error("mqtt: %s; the rows will be sent again", exc)
            return
        self._ack_blocked = False
        with self._cond:
            self._counts["acked"] += len(rows)
            self._cond.notify_all()

    def _drop(self, row: int) -> None:
        try:
            self._spool.ack(row)
        except SpoolError as exc:
            log.error("mqtt: %s; the row will be sent again", exc)

    # -- sender thread -------------------------------------------------------
    def _send_loop(self) -> None:
        run_in_background()
        while not self._stopping.is_set():
            self._delete_acked()
            with self._cond:
                room = self.config.max_inflight - len(self._outstanding)
                if not self._connected or room <= 0:
                    if not self._acked:
                        self._cond.wait(_IDLE_WAIT_S)
                    continue
                epoch, cursor = self._epoch, self._cursor
                self._dirty = False
            try:
                items = self._spool.pending(room, after_id=cursor)
            except SpoolError as exc:
                log.error("mqtt: %s", exc)
                self._stopping.wait(_IDLE_WAIT_S)
                continue
            if not items:
                with self._cond:
                    if not self._dirty and not self._acked and not self._stopping.is_set():
                        self._cond.wait(_IDLE_WAIT_S)
                continue
            for item in items:
                if self._stopping.is_set() or not self._send(item, epoch):
                    break

    def _send(self, item: SpoolItem, epoch: int) -> bool:
        """Hand one row to paho; False when the batch should stop (disconnected, queue full)."""
        props = self._props(PacketTypes.PUBLISH, item.content_type or _CONTENT_TYPES[item.kind], item.seq)
        try:
            info = self._client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain, properties=props)
        except ValueError as exc:  # bad topic or oversized payload: it can never be sent
            log.error("mqtt: dropping unpublishable %s seq=%d: %s", item.kind, item.seq, exc)
            with self._cond:
                self._counts["invalid"] += 1
                self._cursor = item.id if epoch == self._epoch else self._cursor
            self._drop(item.id)
            return True
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # e.g. the connection just dropped
            log.debug("mqtt: publish of seq=%d deferred: %s", item.seq, mqtt.error_string(info.rc))
            self._stopping.wait(0.1)  # no busy loop until on_disconnect has run
            return False
        with self._cond:
            self._counts["published"] += 1
            if epoch != self._epoch:  # disconnected meanwhile: sent again from the start
                return False
            self._cursor = item.id
            if item.qos > 0 and info.mid not in self._unmatched:
                self._outstanding[info.mid] = item.id
            else:  # QoS 0 is done once paho took it; or the PUBACK arrived before this line
                self._settle(item.id, self._unmatched.get(info.mid) if item.qos else None)
            # Everything this thread published is registered now, so what is left
            # unmatched belongs to status messages or older epochs.
            self._unmatched.clear()
            self._cond.notify_all()
        return True
