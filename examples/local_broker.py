"""A local Mosquitto broker on a free loopback port, for the demo and the tests.

Production boxes talk to the plant's broker; this one exists so that the
whole chain can be shown and tested on one machine with a real broker.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt

from edge_inspector.errors import EdgeInspectorError

__all__ = ["BrokerUnavailable", "LocalBroker", "find_mosquitto", "free_port"]


class BrokerUnavailable(EdgeInspectorError):
    """The mosquitto binary is not installed."""


def find_mosquitto() -> str | None:
    """The mosquitto binary: on PATH, or in /usr/sbin where Debian puts it."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """A real ``mosquitto`` process on ``127.0.0.1`` and a free port.

    ``stop()`` and ``start()`` again keep the same port, for broker-outage
    tests. With ``persistence=True`` retained messages and persistent
    sessions (with their queued QoS 1 messages) survive a restart, as they
    would on a production broker. ``extra_config`` lines are appended to the
    generated file (a later ``allow_anonymous false`` wins). Raises
    :class:`BrokerUnavailable` when mosquitto is missing.
    """

    host = "127.0.0.1"

    def __init__(self, *, persistence: bool = False, port: int | None = None, extra_config: Sequence[str] = ()) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerUnavailable("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_config = list(extra_config)
        self.workdir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.log_file = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"user {getpass.getuser()}",  # never drop privileges: the work folder stays writable
            *self.extra_config,
        ]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Start the broker (again) on the same port and wait until it accepts connections."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        config = self._write_config()
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen([self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s:\n{self.log()}")

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        if self.running:
            self._proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]

    def kill(self) -> None:
        """End the broker at once (SIGKILL), paused or not: it answers nothing more and saves nothing."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Terminate the broker (SIGTERM: a persistent broker saves its state) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused broker must run to handle SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def subscribe(self, topic: str, on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None]) -> mqtt.Client:
        """An MQTT v5 client of this broker, subscribed to ``topic`` (QoS 1) at every connect, its loop running."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        client.on_message = on_message
        client.connect(self.host, self.port)
        client.loop_start()
        return client

    def log(self) -> str:
        """What the broker has logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def close(self) -> None:
        """Stop the broker and remove its work folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
