"""Counters the agent reports in ``status`` and, optionally, to Prometheus."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Counters", "MetricsServer", "render_metrics"]


class Counters:
    """Frames inferred, verdicts by label, reloads; and when frames last moved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.last_inference = time.monotonic()

    def add(self, name: str, amount: int = 1) -> None:
        """Increase a counter."""
        with self._lock:
            self._counts[name] += amount

    def inferred(self, labels: list[str]) -> None:
        """Record a micro-batch that went through inference."""
        with self._lock:
            self._counts["inferred"] += len(labels)
            for label in labels:
                self._counts[f"verdicts.{label}"] += 1
            self.last_inference = time.monotonic()

    def snapshot(self) -> dict[str, int]:
        """A copy of the counters."""
        with self._lock:
            return dict(self._counts)

    def uptime(self) -> float:
        """Seconds since start."""
        return time.monotonic() - self.started

    def idle_for(self) -> float:
        """Seconds since a frame last went through inference."""
        return time.monotonic() - self.last_inference


def _metric_name(name: str) -> str:
    return "edge_inspector_" + "".join(c if c.isalnum() else "_" for c in name)


def render_metrics(values: dict[str, float]) -> str:
    """Prometheus text exposition of flat name -> value pairs."""
    lines = []
    for name, value in sorted(values.items()):
        metric = _metric_name(name)
        lines += [f"# TYPE {metric} gauge", f"{metric} {float(value)}"]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` on a port, serving whatever ``collect()`` returns."""

    def __init__(self, port: int, collect: Callable[[], dict[str, float]], host: str = "0.0.0.0") -> None:
        collect_fn = collect

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # scrapes are not news
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render_metrics(collect_fn()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
