"""A real MJPEG-over-HTTP camera for tests: frames served as multipart/x-mixed-replace."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from examples.local_broker import free_port

BOUNDARY = b"frame"


INDEX_BITS = 12
_CELL = 16


def render_index(index: int) -> np.ndarray:
    """An RGB frame that carries ``index`` in its pixels (one black or white cell per bit)."""
    bits = [(index >> b) & 1 for b in range(INDEX_BITS)]
    row = np.repeat(np.asarray(bits, np.uint8) * 255, _CELL)
    return np.repeat(np.tile(row[None, :, None], (_CELL, 1, 3)), 2, axis=0)


def read_index(image: np.ndarray) -> int:
    """The index :func:`render_index` drew, read back from a (decoded, lossy) frame."""
    centres = image[_CELL // 2, _CELL // 2 :: _CELL][:INDEX_BITS].mean(axis=1)
    return sum(1 << b for b, value in enumerate(centres) if value > 127)


class MjpegCamera:
    """Serves frames at ``fps`` on ``http://127.0.0.1:PORT/stream.mjpg``; stop and start again.

    ``frames`` are served in a loop; with ``render`` instead, frame ``i`` of
    the stream is ``render(i)`` (``served`` frames have been written so far).
    """

    def __init__(
        self,
        frames: list[np.ndarray] | None = None,
        fps: float = 20.0,
        port: int | None = None,
        render: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        self.jpegs = [_jpeg(f) for f in frames or []]
        self.render = render
        if not self.jpegs and render is None:
            raise ValueError("MjpegCamera needs frames or render")
        self.fps = fps
        self.port = port or free_port()
        self.server: ThreadingHTTPServer | None = None
        self.served = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegCamera:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.end_headers()
                index = 0
                started = time.monotonic()
                try:
                    while camera.server is not None:
                        if camera.render is not None:
                            jpeg = _jpeg(camera.render(camera.served))
                        else:
                            jpeg = camera.jpegs[index % len(camera.jpegs)]
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        camera.served += 1
                        index += 1
                        next_at = started + index / camera.fps  # a camera's clock: no drift
                        time.sleep(max(0.0, next_at - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def _jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
