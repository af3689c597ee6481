"""How the agent shares the CPU: inference first, everything else in its slack, one core kept for it."""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["BACKGROUND_NICE", "default_inference_threads", "lower_thread_priority"]

log = logging.getLogger(__name__)

# On a box with as many cores as inference threads, a frame's other work
# (decoding, resizing, heatmaps, spooling) competes with inference for them.
# Lowered by this much it runs when an inference thread waits (between
# layers, between batches) instead of pre-empting one.
BACKGROUND_NICE = 10


def lower_thread_priority() -> None:
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


def default_inference_threads() -> int:
    """CPU inference threads when the config sets none: every core this process may use but one.

    The last core decodes, resizes, draws heatmaps and talks MQTT. On a
    2-core box the agent then delivers its model's full rate, where two
    inference threads leave it about three quarters of a faster one
    (bench/README.md).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)
