"""systemd's notify protocol (``sd_notify``) without dependencies.

systemd runs the agent as ``Type=notify``: it sets ``$NOTIFY_SOCKET`` and
waits for a datagram. The agent sends

- ``READY=1`` once the model is loaded and warmed up (TensorRT engines can
  take minutes: the unit's ``TimeoutStartSec`` covers that),
- ``STATUS=...`` as a one-line summary shown by ``systemctl status``,
- ``WATCHDOG=1`` periodically, but only while frames keep moving through
  capture and inference. A stuck camera or a hung inference must let the
  watchdog expire so that systemd restarts the service. The agent decides
  when the pipeline is healthy; this module only sends,
- ``STOPPING=1`` when SIGTERM starts the drain.

Outside systemd ``$NOTIFY_SOCKET`` is unset and every call is a no-op that
returns False, so the agent runs the same from a shell. Nothing is read from
the environment at import time.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify", "ready", "status", "stopping", "watchdog_interval", "watchdog_ping"]

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    # A leading '@' names a socket in Linux's abstract namespace: a NUL byte.
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def notify(state: str) -> bool:
    """Send one notification to the service manager.

    Args:
        state: newline-separated ``KEY=VALUE`` assignments, e.g. ``"READY=1"``.

    Returns:
        True when the datagram was sent; False when ``$NOTIFY_SOCKET`` is unset
        (not run by systemd) or sending failed. Never raises.
    """
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(raw))
            sock.sendall(state.encode())
    except (OSError, ValueError) as exc:
        # The service manager may be gone (shutdown) or the socket unreachable;
        # a failed notification must never take the agent down.
        log.debug("sd_notify %r to %s failed: %s", state.split("=", 1)[0], raw, exc)
        return False
    return True


def ready() -> bool:
    """``READY=1``: start-up finished, the model is loaded and warm."""
    return notify("READY=1")


def stopping() -> bool:
    """``STOPPING=1``: shutdown has begun (drain and flush)."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """``STATUS=<text>``: a one-line summary for ``systemctl status``.

    Newlines would start a new assignment, so they are replaced by spaces.
    """
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_ping() -> bool:
    """``WATCHDOG=1``: send only while frames keep moving through the pipeline."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """How often to send ``WATCHDOG=1``, in seconds.

    Half of ``$WATCHDOG_USEC``, so that two pings fall into each watchdog
    period.

    Returns:
        The interval, or None when no watchdog is set for this process
        (``$WATCHDOG_USEC`` unset, not a positive integer, or ``$WATCHDOG_PID``
        naming another process).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2_000_000
