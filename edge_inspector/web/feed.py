"""The live view's feed: the newest verdicts and the newest inspected frame, written by the inspection loop."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FeedEntry", "LiveFeed"]


@dataclass(frozen=True)
class FeedEntry:
    """One verdict in the feed; ``number`` counts verdicts since the agent started, from 1."""

    number: int
    verdict: dict[str, Any]


class LiveFeed:
    """The last ``size`` verdicts, and a picture of the newest frame drawn only when someone asks for it.

    The inspection loop calls :meth:`add` for every verdict; drawing the
    heatmap over a frame costs milliseconds, so :meth:`picture` draws the
    newest one on request (a browser showing the live view) and keeps it.
    """

    def __init__(self, size: int = 50) -> None:
        self._lock = threading.Lock()
        self._entries: deque[FeedEntry] = deque(maxlen=size)
        self._number = 0
        self._draw: Callable[[], bytes] | None = None
        self._drawn: tuple[int, bytes] | None = None

    @property
    def newest(self) -> int:
        """The number of the newest verdict (0: none yet)."""
        with self._lock:
            return self._number

    def add(self, verdict: dict[str, Any], draw: Callable[[], bytes]) -> None:
        """A new verdict (as JSON data) and how to draw its frame with the heatmap (JPEG bytes)."""
        with self._lock:
            self._number += 1
            self._entries.append(FeedEntry(self._number, verdict))
            self._draw = draw

    def since(self, number: int) -> list[FeedEntry]:
        """The verdicts after ``number`` still in the feed, oldest first."""
        with self._lock:
            return [entry for entry in self._entries if entry.number > number]

    def picture(self) -> tuple[int, bytes] | None:
        """(number, JPEG) of the newest frame with its heatmap; None before the first verdict."""
        with self._lock:
            number, draw, drawn = self._number, self._draw, self._drawn
        if draw is None:
            return None
        if drawn is not None and drawn[0] == number:
            return drawn
        jpeg = draw()
        with self._lock:
            if self._drawn is None or self._drawn[0] < number:
                self._drawn = (number, jpeg)
        return number, jpeg
