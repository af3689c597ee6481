"""A pipeline stage: a worker thread fed through a short queue, so the next step runs beside this one."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from edge_inspector.priority import lower_thread_priority

__all__ = ["Stage"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_DONE = object()


class Stage(threading.Thread, Generic[T]):
    """Runs ``work`` on each item put, in order, on its own thread.

    The queue holds ``depth`` items: a producer faster than ``work`` waits
    (backpressure) instead of piling up frames. An exception in ``work``
    stops the stage; the next :meth:`put` raises it in the producer, so a
    failure is never silent. A ``background`` stage runs at a lower CPU
    priority (:func:`lower_thread_priority`).
    """

    def __init__(self, name: str, work: Callable[[T], None], depth: int = 2, *, background: bool = False) -> None:
        super().__init__(name=name, daemon=True)
        self.background = background
        self._work = work
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.failure: BaseException | None = None

    def run(self) -> None:
        if self.background:
            lower_thread_priority()
        while (item := self._queue.get()) is not _DONE:
            try:
                self._work(item)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the producer by put()
                log.exception("%s stage failed", self.name)
                self.failure = exc
                return

    def put(self, item: T, stop: threading.Event) -> bool:
        """Queue an item, waiting for room; False when ``stop`` was set first.

        Raises:
            BaseException: what made the stage fail.
        """
        while True:
            if self.failure is not None:
                raise self.failure
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if stop.is_set():
                    return False

    def close(self, timeout: float) -> bool:
        """Finish the queued items and end the thread; False when it did not end within ``timeout`` s."""
        if self.is_alive():
            try:
                self._queue.put(_DONE, timeout=timeout)
            except queue.Full:
                return False
            self.join(timeout)
        return not self.is_alive()
