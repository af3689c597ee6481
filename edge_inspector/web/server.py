"""uvicorn on a thread beside the inspection loop, on a socket bound here so that a taken port is a clear error."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from edge_inspector.errors import ConfigError

__all__ = ["HttpServer"]

log = logging.getLogger(__name__)


class HttpServer:
    """Serves ``app`` on ``host:port`` until :meth:`close`."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self.port = port
        # the live view's event streams stay open: shutdown gives them a second, then closes them
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Listen, and serve on a thread.

        Raises:
            ConfigError: the address cannot be bound (port in use, no such host).
        """
        try:
            family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            raise ConfigError(f"http: cannot listen on {self.host}:{self.port} ({exc.strerror or exc})") from exc
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self._server.started:
            raise ConfigError(f"http: the server on {self.host}:{self.port} did not start (see the log above)")
        log.info("HTTP API and live view on http://%s:%d/", self.host, self.port)

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (open event streams are cut after a second)."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the HTTP server did not stop within %.0f s", timeout)
        self._thread = None
