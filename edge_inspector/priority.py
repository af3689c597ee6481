"""CPU priority of the agent's threads: inference first, everything else in its slack."""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["BACKGROUND_NICE", "run_in_background"]

log = logging.getLogger(__name__)

# On a box with as many cores as inference threads, a frame's other work
# (decoding, resizing, heatmaps, spooling) competes with inference for them.
# Lowered by this much it runs when an inference thread waits (between
# layers, between batches) instead of pre-empting one.
BACKGROUND_NICE = 10


def run_in_background() -> None:
    """Lower the calling thread's CPU priority by :data:`BACKGROUND_NICE` (Linux: nice is per thread).

    Where that is not possible (another OS) the thread keeps its priority.
    """
    if not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICE)
    except OSError as exc:
        log.debug("thread %s keeps its priority: %s", threading.current_thread().name, exc)
