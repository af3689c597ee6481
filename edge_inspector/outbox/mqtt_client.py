"""A paho-mqtt 2.x client set up from :class:`~edge_inspector.config.MqttConfig`, and what goes with it.

The client's credentials, TLS, reconnect backoff and in-flight window; the
MQTT v5 properties every message carries; a probe that says why a
connection attempt failed, which paho does not; and the connection problems,
logged once each.
"""

from __future__ import annotations

import logging
import socket
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from edge_inspector.config import MqttConfig, TlsConfig
from edge_inspector.errors import ConfigError

__all__ = ["ConnectionProblems", "make_client", "message_properties", "probe_broker"]

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(f"{__name__}.paho")

_SOCKET_ERRORS = ("failed to receive on socket", "timeout on socket")


def make_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A client with the config's protocol, credentials, TLS, backoff (1-30 s) and in-flight window; no callbacks.

    Raises:
        ConfigError: the TLS files cannot be loaded.
    """
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311,
    )
    client.suppress_exceptions = True  # an exception in a callback is logged; the network thread lives on
    if config.username is not None:
        password = config.password.get_secret_value() if config.password is not None else None
        client.username_pw_set(config.username, password)
    elif config.password is not None:
        log.warning("mqtt: a password is set but no username; the password is not sent")
    if config.tls is not None:
        try:
            client.tls_set(
                ca_certs=str(config.tls.ca_file),
                certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
                keyfile=str(config.tls.key_file) if config.tls.key_file else None,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"mqtt.tls: cannot load the CA or client certificate ({exc})") from exc
        client.tls_insecure_set(config.tls.insecure)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(config.max_inflight)
    return client


def message_properties(v5: bool, packet_type: int, content_type: str, seq: int | None = None) -> Properties | None:
    """MQTT v5 properties: the content type and, for spooled messages, ``seq`` as a user property (None on 3.1.1)."""
    if not v5:
        return None
    props = Properties(packet_type)
    props.ContentType = content_type
    if seq is not None:
        props.UserProperty = ("seq", str(seq))
    return props


def probe_broker(config: MqttConfig) -> str:
    """Why a connection attempt failed: paho swallows the error, so connect once more, TLS handshake included."""
    try:
        with socket.create_connection((config.host, config.port), timeout=2.0) as sock:
            if config.tls is None:
                return "the port answers, so the MQTT handshake failed"
            return _tls_problem(config.host, config.tls, sock)
    except OSError as exc:  # refused, unreachable, unknown host, timeout
        return exc.strerror or str(exc) or type(exc).__name__


def _tls_problem(host: str, tls: TlsConfig, sock: socket.socket) -> str:
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        context.check_hostname = not tls.insecure
        with context.wrap_socket(sock, server_hostname=host):
            return "the TLS handshake succeeds, so the MQTT handshake failed"
    except ssl.SSLCertVerificationError as exc:
        return f"the broker's certificate does not verify against mqtt.tls.ca_file {tls.ca_file}: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"the TLS handshake failed (check mqtt.tls): {exc.reason or exc}"


class ConnectionProblems:
    """Connection problems, each logged once until the state changes, and paho's own log lines.

    Paho's lines go to the ``edge_inspector.outbox.mqtt_client.paho`` logger; its
    socket errors are kept for the next "connection lost" line and otherwise
    logged at debug level, like the "Client is not connected" paho 2.2 repeats
    after every disconnect.
    """

    def __init__(self) -> None:
        self.last: str | None = None
        self._socket_error: str | None = None

    def report(self, message: str, level: int = logging.ERROR) -> None:
        """Log ``message`` unless it is the problem logged last."""
        if message != self.last:
            self.last = message
            log.log(level, "mqtt: %s", message)

    def clear(self) -> None:
        """Connected: the next problem is logged whatever it is."""
        self.last = None

    def lost_because(self, reason: object) -> str:
        """Why the connection dropped: paho's socket error when it logged one, else its reason code."""
        why, self._socket_error = (self._socket_error or str(reason)), None
        return why

    def paho_log(self, _client: mqtt.Client, _userdata: object, level: int, message: str) -> None:
        """paho's ``on_log`` callback."""
        if message.startswith(_SOCKET_ERRORS):
            self._socket_error = message
        noise = message.startswith(("Client is not connected", *_SOCKET_ERRORS))
        _paho_log.log(logging.DEBUG if noise else mqtt.LOGGING_LEVEL[level], "%s", message)
