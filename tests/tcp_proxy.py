"""Test helper: a loopback TCP proxy that can silently drop what the client sends, then cut the connection.

It stands for a network that fails under a live connection: with
:meth:`TcpProxy.swallow` on, the client's writes still succeed (the proxy
reads them) but never reach the server, as when a broker dies with unread
data or a link drops mid-stream; :meth:`TcpProxy.cut` then closes every
connection, which the client notices at once.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``(host, target_port)``, a thread for all connections."""

    def __init__(self, host: str, target_port: int) -> None:
        self._target = (host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}  # socket -> its peer, both ways
        self._clients: set[socket.socket] = set()
        self._swallow = False
        self._swallowed = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    def swallow(self, on: bool = True) -> None:
        """From now on, read what clients send and drop it (the server's side still reaches the clients)."""
        with self._lock:
            self._swallow = on

    @property
    def swallowed(self) -> int:
        """Bytes read from clients and dropped."""
        with self._lock:
            return self._swallowed

    def cut(self) -> None:
        """Close every open connection (new ones are accepted and forwarded as usual; swallowing ends)."""
        with self._lock:
            self._swallow = False
            sockets = list(self._pairs)
            self._pairs.clear()
            self._clients.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the other side
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Stop accepting and cut everything."""
        self._closed = True
        self.cut()
        self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            registered: set[socket.socket] = set()
            while not self._closed:
                with self._lock:
                    live = set(self._pairs)
                for gone in registered - live:
                    selector.unregister(gone)
                for new in live - registered:
                    selector.register(new, selectors.EVENT_READ)
                registered = live
                for key, _ in selector.select(timeout=0.05):
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._forward(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
            server = socket.create_connection(self._target, timeout=5)
        except OSError:
            return
        with self._lock:
            self._pairs[client], self._pairs[server] = server, client
            self._clients.add(client)

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        with self._lock:
            peer = self._pairs.get(sock)
            dropped = self._swallow and sock in self._clients
            if dropped:
                self._swallowed += len(data)
        if peer is None:
            return
        if not data:
            self._drop(sock, peer)
            return
        if dropped:
            return
        try:
            peer.sendall(data)
        except OSError:
            self._drop(sock, peer)

    def _drop(self, sock: socket.socket, peer: socket.socket) -> None:
        with self._lock:
            for s in (sock, peer):
                self._pairs.pop(s, None)
                self._clients.discard(s)
        for s in (sock, peer):
            s.close()
