"""The sender thread: forwards spooled rows to paho in order and deletes what the broker acknowledged.

A row is done when the broker acknowledged it (QoS >= 1) or, for QoS 0, when
the broker answered a *barrier* sent after paho wrote the row to the socket:
an UNSUBSCRIBE of ``barrier_topic``, a filter the agent never subscribes to,
so the answer changes nothing. A QoS 0 row written just before the connection
died is thus sent again on the next one, never lost. With Sparkplug B, verdict
rows go out as their camera's DDATA, at QoS 0; heatmaps on the JSON heatmap topic.

At most ``window`` rows are unanswered at a time; the bookkeeping is
:class:`~edge_inspector.outbox.inflight.InFlight`. Paho's network thread reports the
connection going up or down and the broker's answers; they only touch memory
there (an fsync on that thread would stall keepalives), and this thread
applies them to the spool.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

from edge_inspector.errors import SpoolError, SpoolFullError
from edge_inspector.messages import CONTENT_TYPES
from edge_inspector.outbox.inflight import Answer, InFlight
from edge_inspector.outbox.mqtt_client import message_properties
from edge_inspector.outbox.sparkplug.node import SparkplugNode
from edge_inspector.outbox.spool import Outgoing, Spool, SpoolItem
from edge_inspector.priority import lower_thread_priority

__all__ = ["SpoolSender"]

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 1.0  # the sender re-reads the spool at least this often, notified or not


class SpoolSender:
    """Drains ``spool`` through ``client``; ``counts`` are ``published``, ``acked``, ``rejected``, ``invalid`` and
    ``unconfirmed`` (QoS 0 rows deleted when the broker left a barrier unanswered for ``barrier_timeout`` s)."""

    def __init__(
        self,
        spool: Spool,
        client: mqtt.Client,
        *,
        window: int,
        v5: bool,
        barrier_topic: str,
        barrier_timeout: float,
        sparkplug: SparkplugNode | None = None,
    ) -> None:
        self._spool = spool
        self._client = client
        self._barrier_topic = barrier_topic
        self._barrier_timeout = barrier_timeout
        self._barrier_at = 0.0  # when the barrier in flight went out (time.monotonic)
        self._sparkplug = sparkplug
        self._window = window
        self._v5 = v5
        # Guarded by self._cond. Never call paho while holding it: paho holds its own locks in our callbacks.
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight = InFlight()
        self._up = False
        self._dirty = False
        self._ack_blocked = False  # acknowledged rows cannot be deleted (full disk); logged once
        self.counts = {"published": 0, "acked": 0, "rejected": 0, "invalid": 0, "unconfirmed": 0}

    @property
    def up(self) -> bool:
        """Whether the connection is up, as paho last reported it."""
        return self._up

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="edge-inspector-sender", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds; rows not acknowledged stay spooled."""
        self._stopping.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """Wake the thread: something was spooled."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Block until something changes (a row answered, the connection) or ``timeout`` seconds pass."""
        with self._cond:
            self._cond.wait(timeout)

    def stats(self) -> dict[str, int]:
        """``published``, ``acked``, ``rejected`` (by the broker), ``invalid`` (unpublishable rows dropped),
        ``unconfirmed``, ``inflight`` (rows awaiting an answer) and ``held`` (QoS 0 rows written, no barrier
        answered yet)."""
        with self._cond:
            return {**self.counts, "inflight": len(self._inflight), "held": self._inflight.held}

    def settle(self, timeout: float) -> bool:
        """After :meth:`stop`: wait up to ``timeout`` seconds for the answers to what paho holds, confirm the
        QoS 0 rows with a last barrier and delete them all; False when some stay spooled (they go again after
        the next start)."""
        if self._thread is not None and self._thread.is_alive():  # stuck: it may still hand rows to paho
            return False
        deadline = time.monotonic() + timeout
        while True:
            self._send_barrier()
            with self._cond:
                if not (self._inflight.held or len(self._inflight)) or not self._up:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        self.apply_answers()
        with self._cond:
            return not (self._inflight.held or len(self._inflight))

    # -- from paho's network thread --------------------------------------------
    def link_up(self) -> None:
        """The connection is up: send from the first unacknowledged row."""
        with self._cond:
            self._up = True
            self._dirty = True
            self._cond.notify_all()

    def link_down(self) -> int:
        """The connection dropped: unanswered rows go again; returns how many there were."""
        with self._cond:
            self._up = False
            unanswered = self._inflight.lost()
            self._cond.notify_all()
        return unanswered

    def answer(self, mid: int, reason: Answer | None) -> None:
        """The broker answered message ``mid`` (paho wrote it, for QoS 0; an UNSUBACK, for a barrier)."""
        with self._cond:
            self._inflight.answer(mid, reason)
            self._cond.notify_all()

    # -- on this thread (and once more after it stopped) -----------------------
    def apply_answers(self) -> None:
        """Delete the rows the broker acknowledged, in one transaction; log those it refused."""
        with self._cond:
            rows, refused = self._inflight.take()
            self.counts["rejected"] += len(refused)
        for row, reason in refused:
            log.error("mqtt: the broker refused spool row %d (%s); kept, retried after a reconnect", row, reason)
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
            self.counts["acked"] += len(rows)
            self._cond.notify_all()

    def _send_barrier(self) -> None:
        """When held QoS 0 rows wait for one, send a barrier: its answer confirms every row written before it."""
        with self._cond:
            if not self._up or not self._inflight.barrier_due:
                return
            epoch, covers = self._inflight.epoch, self._inflight.held
        rc, mid = self._client.unsubscribe(self._barrier_topic)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:  # disconnected meanwhile: the rows go again
            self._stopping.wait(0.1)  # no busy loop until on_disconnect has run
            return
        with self._cond:
            self._barrier_at = time.monotonic()
            self._inflight.barrier_sent(mid, covers, epoch)

    def _expire_barrier(self) -> None:
        """A broker that leaves a barrier unanswered (against MQTT) must not hold QoS 0 rows forever: after
        ``barrier_timeout`` they count as delivered, as written, and the loss of that guarantee is logged."""
        with self._cond:
            if not self._inflight.barrier_pending or time.monotonic() - self._barrier_at < self._barrier_timeout:
                return
            expired = self._inflight.barrier_expired()
            self.counts["unconfirmed"] += expired
        log.warning(
            "mqtt: the broker did not answer an UNSUBSCRIBE within %.0f s; %d QoS 0 message(s) counted as "
            "delivered unconfirmed",
            self._barrier_timeout,
            expired,
        )

    def _idle(self) -> bool:
        """Nothing to apply and no barrier due (the caller holds the condition)."""
        return not self._inflight.answered and not (self._up and self._inflight.barrier_due)

    def _loop(self) -> None:
        lower_thread_priority()
        while not self._stopping.is_set():
            self.apply_answers()
            self._expire_barrier()
            self._send_barrier()
            with self._cond:
                room = self._inflight.room(self._window)
                if not self._up or room <= 0:
                    if self._idle():
                        self._cond.wait(_IDLE_WAIT_S)
                    continue
                epoch, cursor = self._inflight.epoch, self._inflight.cursor
                self._inflight.forget_unmatched()
                self._dirty = False
            try:
                items = self._spool.pending(room, after_id=cursor)
            except SpoolError as exc:
                log.error("mqtt: %s", exc)
                self._stopping.wait(_IDLE_WAIT_S)
                continue
            if not items:
                with self._cond:
                    if not self._dirty and self._idle() and not self._stopping.is_set():
                        self._cond.wait(_IDLE_WAIT_S)
                continue
            for item in items:
                if self._stopping.is_set() or not self._send(item, epoch):
                    break

    def publish(self, message: Outgoing | SpoolItem, seq: int) -> tuple[mqtt.MQTTMessageInfo, int]:
        """Hand a message to paho as this station publishes it (a verdict as DDATA with Sparkplug B);
        returns paho's handle and the QoS it went out at.

        Raises:
            ValueError: it can never be sent (a bad topic, an oversized payload, a camera that is no device).
        """
        if self._sparkplug is not None and message.kind == "verdict":
            return self._sparkplug.publish_verdict(self._client, message.payload), 0
        content_type = message.content_type or CONTENT_TYPES[message.kind]
        props = message_properties(self._v5, PacketTypes.PUBLISH, content_type, seq)
        info = self._client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain, properties=props
        )
        return info, message.qos

    def _send(self, item: SpoolItem, epoch: int) -> bool:
        """Hand one row to paho; False when the batch should stop (disconnected, queue full)."""
        try:
            info, qos = self.publish(item, item.seq)
        except ValueError as exc:  # bad topic or oversized payload: it can never be sent
            log.error("mqtt: deleting unpublishable %s seq=%d: %s", item.kind, item.seq, exc)
            with self._cond:
                self.counts["invalid"] += 1
                self._inflight.skipped(item.id, epoch)
            try:
                self._spool.ack(item.id)
            except SpoolError as delete_error:
                log.error("mqtt: %s; the row will be sent again", delete_error)
            return True
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # e.g. the connection just dropped
            log.debug("mqtt: publish of seq=%d deferred: %s", item.seq, mqtt.error_string(info.rc))
            self._stopping.wait(0.1)  # no busy loop until on_disconnect has run
            return False
        with self._cond:
            self.counts["published"] += 1
            current = self._inflight.handed(item.id, info.mid, epoch, qos)  # False: disconnected meanwhile
            self._cond.notify_all()
        return current
