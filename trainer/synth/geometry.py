"""Board geometry: feature descriptions and a board-unit to pixel rasterizer.

Geometry is expressed in *board units*: the visible view spans ``[0, 1]`` on both
axes (1.0 is the final image side before pose jitter, x right, y down). Canvases
cover an extra ``MARGIN`` on every side so small pose changes never expose an edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import cv2
import numpy as np

Point = tuple[float, float]

MARGIN = 0.1
CLEARANCE = 0.028
CHECK_SCALE = 160.0
_SHIFT = 4


@dataclass
class Trace:
    """A copper trace: a polyline with round joins and caps."""

    points: list[Point]
    width: float
    net: int

    def segments(self) -> Iterator[tuple[Point, Point]]:
        """Yield consecutive (start, end) point pairs."""
        yield from pairwise(self.points)


@dataclass
class Pad:
    """A round or square pad; ``radius`` is the half-side for square pads."""

    center: Point
    radius: float
    square: bool
    has_hole: bool
    hole_radius: float
    net: int


@dataclass
class BoardDescription:
    """Everything the renderer drew, in board units."""

    traces: list[Trace] = field(default_factory=list)
    pads: list[Pad] = field(default_factory=list)
    silk_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    silk_text: list[tuple[Point, str, float]] = field(default_factory=list)


class Raster:
    """Maps board units onto a square pixel canvas covering the margin too."""

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)
        self.side = int(round((1 + 2 * MARGIN) * self.scale))

    def px(self, p: Sequence[float]) -> tuple[float, float]:
        """Board units to (float) pixel-centre coordinates."""
        return ((p[0] + MARGIN) * self.scale - 0.5, (p[1] + MARGIN) * self.scale - 0.5)

    def fix(self, p: Sequence[float]) -> tuple[int, int]:
        """Board units to fixed-point pixel coordinates for cv2 ``shift``."""
        x, y = self.px(p)
        f = 1 << _SHIFT
        return int(round(x * f)), int(round(y * f))

    def blank(self) -> np.ndarray:
        """A zeroed uint8 mask of canvas size."""
        return np.zeros((self.side, self.side), np.uint8)

    def disc(self, mask: np.ndarray, c: Point, r: float, value: int = 255) -> None:
        """Fill a disc."""
        rr = max(1, int(round(r * self.scale * (1 << _SHIFT))))
        cv2.circle(mask, self.fix(c), rr, value, -1, cv2.LINE_AA, _SHIFT)

    def polygon(self, mask: np.ndarray, pts: Sequence[Sequence[float]], value: int = 255) -> None:
        """Fill a polygon."""
        arr = np.array([self.fix(p) for p in pts], np.int32)
        cv2.fillPoly(mask, [arr], value, cv2.LINE_AA, _SHIFT)

    def square(self, mask: np.ndarray, c: Point, half: float, value: int = 255) -> None:
        """Fill an axis-aligned square."""
        x, y = c
        self.polygon(
            mask, [(x - half, y - half), (x + half, y - half), (x + half, y + half), (x - half, y + half)], value
        )

    def polyline(self, mask: np.ndarray, pts: Sequence[Point], width: float, value: int = 255) -> None:
        """Draw a thick polyline with exact sub-pixel width and round joins."""
        r = width / 2
        for a, b in pairwise(pts):
            d = np.subtract(b, a)
            n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-9) * r
            self.polygon(mask, [a + n, b + n, b - n, a - n], value)
        for p in pts:
            self.disc(mask, p, r, value)

    def pad(self, mask: np.ndarray, pad: Pad, grow: float = 0.0, value: int = 255) -> None:
        """Draw a pad's copper, optionally grown by ``grow``."""
        if pad.square:
            self.square(mask, pad.center, pad.radius + grow, value)
        else:
            self.disc(mask, pad.center, pad.radius + grow, value)
