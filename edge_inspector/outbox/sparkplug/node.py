"""The station as a Sparkplug B Edge Node: its session numbers and the messages it publishes through paho.

``bdSeq`` counts MQTT sessions: the NDEATH set as the will of a connection
and the NBIRTH sent on it carry the same value, the next connection the next
one (0-255, wrapping). It is kept in a file beside the spool, so a restarted
agent goes on from where it stopped. ``seq`` counts the messages of one
birth: 0 in NBIRTH, then one more for every DBIRTH and DDATA, wrapping at
256. Assigning ``seq`` and handing the message to paho happen under one
lock, so ``seq`` order is publication order whichever thread publishes
(the sender's DDATA, a rebirth on paho's thread).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge_inspector.config import AgentConfig
from edge_inspector.messages import ModelRef, Verdict
from edge_inspector.outbox.sparkplug import sparkplug_b_pb2 as pb
from edge_inspector.outbox.sparkplug.payloads import (
    REBIRTH,
    SEQ_MODULO,
    device_birth,
    node_birth,
    node_death,
    topic,
    verdict_data,
)

__all__ = ["SparkplugNode"]

log = logging.getLogger(__name__)


class SparkplugNode:
    """One Edge Node (``station``) in ``group``, a Device per camera.

    Args:
        bd_seq_file: where ``bdSeq`` survives restarts (created when missing).
    """

    def __init__(
        self,
        *,
        group: str,
        station: str,
        cameras: Sequence[str],
        model: ModelRef,
        classes: Sequence[str],
        bd_seq_file: Path,
    ) -> None:
        self.group = group
        self.station = station
        self.cameras = list(cameras)
        self.command_topic = topic(group, "NCMD", station)
        self._model = model
        self._classes = list(classes)
        self._file = bd_seq_file
        self._lock = threading.Lock()
        self._seq = 0
        self._born = False  # births sent on this connection: data may follow
        self._born_at = 0.0
        self._save_failed = False
        self.bd_seq = (self._load() + 1) % SEQ_MODULO
        self._save()

    @classmethod
    def for_agent(cls, config: AgentConfig, model: ModelRef, classes: Sequence[str]) -> SparkplugNode:
        """The node of an agent's config: its station, its cameras, ``bdSeq`` kept beside the spool."""
        return cls(
            group=config.mqtt.sparkplug_group,
            station=config.station,
            cameras=[camera.name for camera in config.cameras],
            model=model,
            classes=classes,
            bd_seq_file=config.spool.path.parent / "sparkplug-bdseq",
        )

    # -- bdSeq -------------------------------------------------------------
    def _load(self) -> int:
        try:
            return int(self._file.read_text().strip())
        except FileNotFoundError:
            return -1
        except (OSError, ValueError) as exc:
            log.warning("sparkplug: cannot read bdSeq from %s (%s); starting again at 0", self._file, exc)
            return -1

    def _save(self) -> None:
        """Write ``bdSeq`` atomically; on a full or read-only disk it lives on in memory (logged once)."""
        scratch = self._file.with_name(self._file.name + ".tmp")
        try:
            scratch.write_text(f"{self.bd_seq}\n")
            os.replace(scratch, self._file)
            self._save_failed = False
        except OSError as exc:
            if not self._save_failed:
                log.error("sparkplug: cannot keep bdSeq in %s (%s); a restart may repeat it", self._file, exc)
            self._save_failed = True

    def will(self) -> tuple[str, bytes]:
        """(topic, payload) of the NDEATH to set as the will of the next connection."""
        return topic(self.group, "NDEATH", self.station), node_death(self.bd_seq)

    def next_session(self) -> None:
        """The connection is gone: the next one gets the next ``bdSeq``."""
        with self._lock:
            self._born = False
            self.bd_seq = (self.bd_seq + 1) % SEQ_MODULO
            self._save()

    # -- messages ------------------------------------------------------------
    def _next_seq(self) -> int:
        seq, self._seq = self._seq, (self._seq + 1) % SEQ_MODULO
        return seq

    def birth(self, client: mqtt.Client) -> None:
        """NBIRTH (``seq`` 0) and a DBIRTH per camera: on every connection and on a rebirth command."""
        with self._lock:
            self._births(client)

    def new_model(self, model: ModelRef, classes: Sequence[str], client: mqtt.Client | None) -> None:
        """The model changed: born again with it and its classes now (``client``: connected), else at the next
        connection; no DDATA goes out between the change and the births."""
        with self._lock:
            self._model, self._classes = model, list(classes)
            if client is not None:
                self._births(client)

    def _births(self, client: mqtt.Client) -> None:
        self._seq = 1  # NBIRTH is 0
        self._born, self._born_at = True, time.time()
        birth = node_birth(self.bd_seq, self._model, self.station)
        client.publish(topic(self.group, "NBIRTH", self.station), birth, qos=0)
        for index, camera in enumerate(self.cameras):
            payload = device_birth(index, self._classes, self._next_seq())
            client.publish(topic(self.group, "DBIRTH", self.station, camera), payload, qos=0)
        log.info(
            "sparkplug: born as %s/%s (bdSeq %d, %d devices)", self.group, self.station, self.bd_seq, len(self.cameras)
        )

    def publish_verdict(self, client: mqtt.Client, verdict_json: bytes) -> mqtt.MQTTMessageInfo:
        """A spooled verdict as DDATA of its camera, QoS 0 as Sparkplug B wants.

        Raises:
            ValueError: the verdict names a camera without a DBIRTH (removed from the config since).
        """
        verdict = Verdict.model_validate_json(verdict_json)
        if verdict.camera not in self.cameras:
            raise ValueError(f"camera {verdict.camera!r} is not a device of this node")
        device = self.cameras.index(verdict.camera)
        with self._lock:
            if not self._born:  # connected again but not born yet: it waits for the births (paho's answer)
                unborn = mqtt.MQTTMessageInfo(0)
                unborn.rc = MQTTErrorCode.MQTT_ERR_NO_CONN
                return unborn
            historical = verdict.captured_at.timestamp() < self._born_at
            payload = verdict_data(verdict, device, self._classes, self._next_seq(), historical)
            return client.publish(topic(self.group, "DDATA", self.station, verdict.camera), payload, qos=0)

    def death(self, client: mqtt.Client) -> mqtt.MQTTMessageInfo:
        """NDEATH published by the node itself: a clean disconnect does not fire the will."""
        name, payload = self.will()
        return client.publish(name, payload, qos=1)

    @staticmethod
    def rebirth_requested(payload: bytes) -> bool:
        """Whether an NCMD payload asks for a rebirth (``Node Control/Rebirth`` true)."""
        try:
            command = pb.Payload.FromString(payload)
        except Exception:  # protobuf's DecodeError and friends: a host's garbage is not our crash
            log.warning("sparkplug: ignoring an NCMD that is not a Sparkplug B payload")
            return False
        return any(
            m.name == REBIRTH and m.WhichOneof("value") == "boolean_value" and m.boolean_value for m in command.metrics
        )
