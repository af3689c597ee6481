"""Defect injectors for the six classes of the public PCB defect benchmarks.

Each injector edits a :class:`~trainer.synth.board.Board` in place (its copper or
hole layer and its description) and returns the defect's bounding box in board
units ``(x0, y0, x1, y1)`` (1.0 = final image side, before pose jitter; the
caller maps it to final pixels). Defects are placed inside the central
``REGION`` so pose jitter never pushes them off the image, and their boxes are
grown to at least ``MIN_BOX`` per side. When a board offers no suitable feature
an injector raises :class:`DefectPlacementError` and the caller re-draws a board.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .board import CLEARANCE, MARGIN, Board, Trace

UnitBox = tuple[float, float, float, float]
Injector = Callable[[Board, np.random.Generator], UnitBox]

REGION = (0.15, 0.85)
MIN_BOX = 0.065


class DefectPlacementError(RuntimeError):
    """The board has no feature where this defect can be placed."""


@dataclass(frozen=True)
class _Site:
    trace: Trace
    p: np.ndarray
    t: np.ndarray
    n: np.ndarray


def _in_region(p: np.ndarray | tuple[float, float], pad: float = 0.0) -> bool:
    lo, hi = REGION[0] + pad, REGION[1] - pad
    return bool(lo <= p[0] <= hi and lo <= p[1] <= hi)


def _unit_box(pts: np.ndarray, pad: float = 0.006) -> UnitBox:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
    c, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, MIN_BOX / 2)
    return (float(c[0] - half[0]), float(c[1] - half[1]), float(c[0] + half[0]), float(c[1] + half[1]))


def _trace_site(board: Board, rng: np.random.Generator, half_len: float) -> _Site:
    """Pick a point on a straight trace stretch, away from bends and pads."""
    segs = [(tr, np.array(a), np.array(b)) for tr in board.description.traces for a, b in tr.segments()]
    if not segs:
        raise DefectPlacementError("board has no traces")
    lens = np.array([np.hypot(*(b - a)) for _, a, b in segs])
    for _ in range(60):
        k = int(rng.choice(len(segs), p=lens / lens.sum()))
        tr, a, b = segs[k]
        margin = half_len + 0.065
        if lens[k] < 2 * margin:
            continue
        t = (b - a) / lens[k]
        p = a + t * rng.uniform(margin, lens[k] - margin)
        if _in_region(p):
            return _Site(tr, p, t, np.array([-t[1], t[0]]))
    raise DefectPlacementError("no straight trace stretch in the central region")


def _erase_on_trace(board: Board, trace: Trace, shape: np.ndarray) -> None:
    erase = cv2.min(board.trace_mask(trace), shape)
    board.copper = cv2.subtract(board.copper, erase)


def _dist_to_others(nm: np.ndarray, scale: float, keep_nets: set[int]) -> np.ndarray:
    """Distance (board units) from each pixel to copper of nets not in ``keep_nets``."""
    others = (nm != 0) & ~np.isin(nm, list(keep_nets))
    return cv2.distanceTransform((~others).astype(np.uint8), cv2.DIST_L2, 5) / scale


def _sample(arr: np.ndarray, pts: np.ndarray, scale: float) -> np.ndarray:
    ij = np.clip(np.round((pts + MARGIN) * scale - 0.5).astype(int), 0, arr.shape[0] - 1)
    return arr[ij[:, 1], ij[:, 0]]


def missing_hole(board: Board, rng: np.random.Generator) -> UnitBox:
    """Fill the drill hole of a round through-hole pad (pad becomes solid copper)."""
    cands = [p for p in board.description.pads if p.has_hole and not p.square and _in_region(p.center)]
    if not cands:
        raise DefectPlacementError("no drilled round pad in the central region")
    pad = cands[int(rng.integers(len(cands)))]
    board.raster.disc(board.holes, pad.center, pad.hole_radius + 2.0 / board.raster.scale, 0)
    pad.has_hole = False
    c = np.array(pad.center)
    return _unit_box(np.array([c - pad.radius, c + pad.radius]))


def mouse_bite(board: Board, rng: np.random.Generator) -> UnitBox:
    """Eat one to three semicircular bites out of one edge of a trace."""
    site = _trace_site(board, rng, half_len=0.07)
    w = site.trace.width
    r = min(0.03, max(0.02, w * float(rng.uniform(0.6, 0.72))))
    spacing = 1.9 * r
    k_max = min(3, int((0.14 - 2 * r) / spacing) + 1)
    weights = np.array([0.2, 0.45, 0.35])[:k_max]
    k = 1 + int(rng.choice(k_max, p=weights / weights.sum()))
    side = float(rng.choice([-1.0, 1.0]))
    shape = board.raster.blank()
    pts = []
    for j in range(k):
        c = site.p + site.n * side * (w / 2 + 0.05 * r) + site.t * ((j - (k - 1) / 2) * spacing)
        rj = r * float(rng.uniform(0.85, 1.1))
        board.raster.disc(shape, tuple(c), rj)
        pts += [c + site.t * rj, c - site.t * rj, c - site.n * side * rj, c + site.n * side * 0.2 * rj]
    _erase_on_trace(board, site.trace, shape)
    return _unit_box(np.array(pts))


def open_circuit(board: Board, rng: np.random.Generator) -> UnitBox:
    """Cut a gap across a trace so the substrate shows through."""
    gap = float(rng.uniform(0.038, 0.058))
    site = _trace_site(board, rng, half_len=gap / 2 + 0.02)
    hw = site.trace.width / 2
    sk1, sk2 = (math.tan(v) for v in rng.uniform(-0.3, 0.3, 2))
    poly, box_pts = [], []
    for along, sk in ((-gap / 2, sk1), (gap / 2, sk2)):
        for across in (-1, 1) if along < 0 else (1, -1):
            poly.append(site.p + site.t * (along + sk * across * (hw + 0.01)) + site.n * across * (hw + 0.01))
            box_pts.append(site.p + site.t * (along + sk * across * hw) + site.n * across * hw)
    shape = board.raster.blank()
    board.raster.polygon(shape, poly)
    _erase_on_trace(board, site.trace, shape)
    return _unit_box(np.array(box_pts))


def short(board: Board, rng: np.random.Generator) -> UnitBox:
    """Join two nearby copper features of different nets with a copper bridge."""
    feats: list[tuple[float, float, float, int]] = []
    for tr in board.description.traces:
        for a, b in tr.segments():
            n = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1]) / 0.008))
            for s in np.linspace(0, 1, n):
                feats.append((a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s, tr.width / 2, tr.net))
    feats += [(p.center[0], p.center[1], p.radius, p.net) for p in board.description.pads]
    f = np.array([x for x in feats if _in_region(x[:2])], np.float64).reshape(-1, 4)
    d = np.hypot(f[:, None, 0] - f[None, :, 0], f[:, None, 1] - f[None, :, 1])
    gap = d - f[:, None, 2] - f[None, :, 2]
    ok = (f[:, None, 3] != f[None, :, 3]) & (gap >= 0.02) & (gap <= 0.085)
    pairs = np.argwhere(np.triu(ok))
    if len(pairs) == 0:
        raise DefectPlacementError("no pair of nearby features")
    chk, nm = board.net_map()
    for i, j in pairs[rng.permutation(len(pairs))[:40]]:
        p, q, ra, rb = f[i, :2], f[j, :2], f[i, 2], f[j, 2]
        u = (q - p) / np.linalg.norm(q - p)
        e1, e2 = p + u * ra, q - u * rb
        path = e1 + np.linspace(0.2, 0.8, 9)[:, None] * (e2 - e1)
        nets = {int(f[i, 3]), int(f[j, 3])}
        dist = _dist_to_others(nm, chk.scale, nets)
        if np.any(_sample(nm, path, chk.scale) != 0) or np.any(_sample(dist, path, chk.scale) < 0.022):
            continue
        bw = float(rng.uniform(0.024, 0.034))
        mid = (e1 + e2) / 2 + np.array([-u[1], u[0]]) * rng.uniform(-0.2, 0.2) * bw
        board.raster.polyline(board.copper, [tuple(p + u * ra * 0.5), tuple(mid), tuple(q - u * rb * 0.5)], bw)
        nrm = np.array([-u[1], u[0]]) * bw / 2
        return _unit_box(np.array([e1 + nrm, e1 - nrm, e2 + nrm, e2 - nrm, mid + nrm, mid - nrm]))
    raise DefectPlacementError("no clear path for a bridge")


def spur(board: Board, rng: np.random.Generator) -> UnitBox:
    """Grow a thin, sharp copper protrusion out of a trace edge."""
    site = _trace_site(board, rng, half_len=0.035)
    hw = site.trace.width / 2
    side = float(rng.choice([-1.0, 1.0]))
    ang = float(rng.uniform(-0.5, 0.5))
    out = site.n * side
    axis = np.array([out[0] * math.cos(ang) - out[1] * math.sin(ang), out[0] * math.sin(ang) + out[1] * math.cos(ang)])
    length = float(rng.uniform(0.05, 0.075))
    base = float(rng.uniform(0.011, 0.016))
    edge = site.p + out * hw
    tip = edge + axis * length
    chk, nm = board.net_map()
    dist = _dist_to_others(nm, chk.scale, {site.trace.net})
    path = edge + np.linspace(0.3, 1.3, 11)[:, None] * (tip - edge)
    if np.any(_sample(nm, path, chk.scale) != 0) or np.any(_sample(dist, path, chk.scale) < CLEARANCE):
        raise DefectPlacementError("spur would touch other copper")
    root = site.p + out * (hw - 0.01)
    poly = [root + site.t * base, tip, root - site.t * base]
    board.raster.polygon(board.copper, poly)
    return _unit_box(np.array([edge + site.t * base, edge - site.t * base, tip]))


def spurious_copper(board: Board, rng: np.random.Generator) -> UnitBox:
    """Deposit an isolated irregular copper blob on bare substrate."""
    r = float(rng.uniform(0.022, 0.036))
    chk, nm = board.net_map()
    scale = chk.scale
    dist = _dist_to_others(nm, scale, set())
    ys, xs = np.nonzero(dist >= r * 1.2 + 0.035)
    uv = np.stack([xs, ys], axis=1) / scale + 0.5 / scale - MARGIN
    inside = (uv >= REGION[0] + r).all(axis=1) & (uv <= REGION[1] - r).all(axis=1)
    uv = uv[inside]
    if len(uv) == 0:
        raise DefectPlacementError("no free substrate for a blob")
    c = uv[int(rng.integers(len(uv)))]
    n = int(rng.integers(9, 15))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = r * rng.uniform(0.65, 1.15, n)
    stretch = rng.uniform(0.75, 1.25)
    pts = c + np.stack([np.cos(angles) * radii * stretch, np.sin(angles) * radii / stretch], axis=1)
    board.raster.polygon(board.copper, pts)
    return _unit_box(pts)


DEFECTS: dict[str, Injector] = {
    "missing_hole": missing_hole,
    "mouse_bite": mouse_bite,
    "open_circuit": open_circuit,
    "short": short,
    "spur": spur,
    "spurious_copper": spurious_copper,
}
