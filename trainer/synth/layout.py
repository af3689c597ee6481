"""Grid router placing pads, traces and silkscreen labels with clearance checks."""

from __future__ import annotations

import logging
import math

import numpy as np

from .geometry import CHECK_SCALE, CLEARANCE, MARGIN, BoardDescription, Pad, Point, Raster, Trace

log = logging.getLogger(__name__)

GRID = 0.11
TRACE_WIDTHS = (0.032, 0.04, 0.05)
_DIRS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


def _new_pad(rng: np.random.Generator, c: Point, width: float, net: int) -> Pad:
    square = bool(rng.random() < 0.25)
    r = float(rng.uniform(max(0.037, width * 0.75), 0.05))
    hole = True if not square else bool(rng.random() < 0.3)
    return Pad(c, r, square, hole, r * float(rng.uniform(0.42, 0.55)), net)


class _Layout:
    """Grid router that places pads and traces while keeping clearances."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.chk = Raster(CHECK_SCALE)
        self.occ = np.zeros((self.chk.side, self.chk.side), np.int32)
        self.silk_occ = self.chk.blank()
        self.desc = BoardDescription()
        self.origin = rng.uniform(0, GRID, 2)
        lo = int(math.ceil((-MARGIN + 0.02 - self.origin.max()) / GRID))
        hi = int(math.floor((1 + MARGIN - 0.02) / GRID))
        self.range = (lo, hi)
        self.free_pads: dict[tuple[int, int], Pad] = {}
        self.next_net = 1

    def node(self, ij: tuple[int, int]) -> Point:
        return (float(self.origin[0] + ij[0] * GRID), float(self.origin[1] + ij[1] * GRID))

    def in_view(self, p: Point, pad: float) -> bool:
        return pad <= p[0] <= 1 - pad and pad <= p[1] <= 1 - pad

    def place(self, traces: list[Trace], pads: list[Pad], net: int) -> bool:
        keep = self.chk.blank()
        for t in traces:
            self.chk.polyline(keep, t.points, t.width + 2 * CLEARANCE)
        for p in pads:
            self.chk.pad(keep, p, CLEARANCE)
        if np.any((keep > 0) & (self.occ != 0) & (self.occ != net)):
            return False
        act = self.chk.blank()
        for t in traces:
            self.chk.polyline(act, t.points, t.width)
        for p in pads:
            self.chk.pad(act, p)
        self.occ[act > 0] = net
        self.desc.traces.extend(traces)
        self.desc.pads.extend(pads)
        return True

    def random_node(self, pad: float) -> tuple[int, int] | None:
        lo, hi = self.range
        for _ in range(20):
            ij = (int(self.rng.integers(lo, hi + 1)), int(self.rng.integers(lo, hi + 1)))
            if self.in_view(self.node(ij), pad):
                return ij
        return None

    def add_header(self) -> None:
        rng = self.rng
        ij = self.random_node(0.1)
        if ij is None:
            return
        step = _DIRS[int(rng.choice([0, 2]))]
        r = float(rng.uniform(0.034, 0.04))
        placed: list[Pad] = []
        for k in range(int(rng.integers(2, 6))):
            n = (ij[0] + step[0] * k, ij[1] + step[1] * k)
            c = self.node(n)
            if not self.in_view(c, 0.06):
                break
            pad = Pad(
                c, r, bool(k == 0 and rng.random() < 0.5), True, r * float(rng.uniform(0.45, 0.55)), self.next_net
            )
            if self.place([], [pad], self.next_net):
                self.free_pads[n] = pad
                placed.append(pad)
            self.next_net += 1
        if len(placed) >= 2 and rng.random() < 0.6:
            xs = [p.center[0] for p in placed]
            ys = [p.center[1] for p in placed]
            g = r + 0.035
            self.desc.silk_boxes.append((min(xs) - g, min(ys) - g, max(xs) + g, max(ys) + g))

    def walk(self, start: tuple[int, int], d: int, steps: int) -> list[tuple[int, int]]:
        rng, (lo, hi) = self.rng, self.range
        path, seen = [start], {start}
        for _ in range(steps):
            if d % 2 == 1 and rng.random() < 0.6:
                d = (d + int(rng.choice([-1, 1]))) % 8
            elif d % 2 == 0 and rng.random() < 0.3:
                d = (d + int(rng.choice([-2, -1, 1, 2], p=[0.35, 0.15, 0.15, 0.35]))) % 8
            nxt = (path[-1][0] + _DIRS[d][0], path[-1][1] + _DIRS[d][1])
            if nxt in seen or not (lo <= nxt[0] <= hi and lo <= nxt[1] <= hi):
                break
            path.append(nxt)
            seen.add(nxt)
        return path

    def add_trace(self) -> bool:
        rng = self.rng
        width = float(rng.choice(TRACE_WIDTHS))
        pads: list[Pad] = []
        kind = rng.random()
        net = self.next_net
        start_pad_key = None
        if kind < 0.35 and self.free_pads:
            keys = sorted(self.free_pads)
            start_pad_key = keys[int(rng.integers(len(keys)))]
            start, net = start_pad_key, self.free_pads[start_pad_key].net
            d = int(rng.choice([0, 2, 4, 6]))
        elif kind < 0.7:
            lo, hi = self.range
            side, k = int(rng.integers(4)), int(rng.integers(lo + 1, hi))
            start, d = [((lo, k), 0), ((hi, k), 4), ((k, lo), 2), ((k, hi), 6)][side]
        else:
            node = self.random_node(0.08)
            if node is None:
                return False
            start, d = node, int(rng.choice(8, p=[0.2, 0.05, 0.2, 0.05, 0.2, 0.05, 0.2, 0.05]))
            pads.append(_new_pad(rng, self.node(start), width, net))
        path = self.walk(start, d, int(rng.integers(3, 12)))
        if len(path) < 3:
            return False
        pts = [path[0]]
        for a, b, c in zip(path, path[1:], path[2:], strict=False):
            if (b[0] - a[0], b[1] - a[1]) != (c[0] - b[0], c[1] - b[1]):
                pts.append(b)
        pts.append(path[-1])
        poly = [self.node(p) for p in pts]
        if self.in_view(poly[-1], 0.06):
            pads.append(_new_pad(rng, poly[-1], width, net))
        if not self.place([Trace(poly, width, net)], pads, net):
            return False
        if start_pad_key is not None:
            del self.free_pads[start_pad_key]
        else:
            self.next_net += 1
        return True

    def add_silk_text(self) -> None:
        rng = self.rng
        label = f"{'RCUDQJ'[int(rng.integers(6))]}{int(rng.integers(1, 40))}"
        h = float(rng.uniform(0.04, 0.055))
        for _ in range(15):
            x, y = rng.uniform(0.05, 0.8), rng.uniform(0.1, 0.95)
            box = (x, y - h, x + h * 0.9 * len(label), y)
            keep = self.chk.blank()
            self.chk.polygon(keep, [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])])
            if not np.any((keep > 0) & ((self.occ != 0) | (self.silk_occ != 0))):
                self.silk_occ[keep > 0] = 1
                self.desc.silk_text.append(((float(x), float(y)), label, h))
                return


def layout(rng: np.random.Generator) -> BoardDescription:
    """Procedurally route pads and traces on a grid with clearance checks."""
    lay = _Layout(rng)
    for _ in range(int(rng.integers(0, 3))):
        lay.add_header()
    want, made = int(rng.integers(6, 12)), 0
    for _ in range(80):
        if made >= want:
            break
        made += lay.add_trace()
    for _ in range(int(rng.integers(0, 3))):
        node = lay.random_node(0.06)
        if node is not None:
            r = float(rng.uniform(0.03, 0.037))
            lay.place([], [Pad(lay.node(node), r, False, True, r * 0.5, lay.next_net)], lay.next_net)
            lay.next_net += 1
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            lay.add_silk_text()
    log.debug("layout: %d traces, %d pads", len(lay.desc.traces), len(lay.desc.pads))
    return lay.desc
