"""Test helpers: a real Mosquitto broker on a free loopback port, and a collecting subscriber.

Import as ``from mqtt_broker import MosquittoBroker, Subscriber`` (``tests`` is on
pytest's ``pythonpath``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from examples.local_broker import BrokerUnavailable, LocalBroker, free_port

__all__ = ["MosquittoBroker", "Received", "Subscriber", "free_port"]


class MosquittoBroker(LocalBroker):
    """:class:`examples.local_broker.LocalBroker` that skips the test when mosquitto is missing."""

    def __init__(self, **kwargs: Any) -> None:
        try:
            super().__init__(**kwargs)
        except BrokerUnavailable as exc:
            pytest.skip(str(exc))


@dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it; ``properties`` from ``Properties.json()`` (MQTT v5)."""

    topic: str
    payload: bytes
    properties: dict[str, Any]
    retain: bool
    qos: int


class Subscriber:
    """A paho MQTT v5 client that subscribes to ``topic`` (QoS 1) and collects what arrives.

    With ``session_expiry`` > 0 the broker keeps the subscription and queues
    QoS 1 messages while the subscriber is disconnected (a broker restart with
    persistence, a network cut); the client reconnects by itself.
    """

    def __init__(self, host: str, port: int, topic: str, *, session_expiry: int = 0, timeout: float = 10.0) -> None:
        self.topic = topic
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        props = None
        if session_expiry:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
        self._client.connect(host, port, keepalive=10, clean_start=not session_expiry, properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"no SUBACK for {topic} within {timeout} s")

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, _codes: Any, _props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties.json() if msg.properties is not None else {}
        item = Received(msg.topic, bytes(msg.payload), props, bool(msg.retain), msg.qos)
        with self._cond:
            self._messages.append(item)
            self._cond.notify_all()

    @property
    def messages(self) -> list[Received]:
        """A copy of everything received so far."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; returns all of them.

        Raises:
            AssertionError: fewer arrived within ``timeout`` seconds (the test fails there, saying so).
        """
        return self.wait_until(lambda ms: len(ms) >= count, timeout, f"{count} message(s)")

    def wait_until(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0, what: str = "the condition"
    ) -> list[Received]:
        """Wait until ``predicate(messages)`` is true; returns the messages.

        Raises:
            AssertionError: it did not hold within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.topic}: {what} not met within {timeout} s ({len(self._messages)} message(s) received)"
                    )
                self._cond.wait(remaining)
            return list(self._messages)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
