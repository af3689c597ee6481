"""Procedural bare printed-circuit-board renderer.

A board is laid out by :func:`~trainer.synth.layout.layout` in board units (see
:mod:`~trainer.synth.geometry`) and rendered into separate layer masks (copper,
drill holes, silkscreen) so defect injectors can edit them before
:meth:`Board.compose` produces the image.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import _SHIFT, CHECK_SCALE, CLEARANCE, MARGIN, BoardDescription, Pad, Point, Raster, Trace
from .layout import layout

__all__ = [
    "CHECK_SCALE",
    "CLEARANCE",
    "MARGIN",
    "Board",
    "BoardDescription",
    "Pad",
    "Point",
    "Raster",
    "Trace",
    "render_board",
]

_MASK_COLORS = {  # RGB solder-mask base colours
    "green": ((22, 92, 40), (55, 140, 80)),
    "blue": ((18, 40, 95), (35, 70, 140)),
    "black": ((22, 24, 24), (38, 40, 40)),
}
_COPPER_COLORS = (
    ((215, 180, 95), 0.45),  # ENIG gold
    ((205, 135, 80), 0.35),  # bare copper
    ((200, 200, 192), 0.20),  # HASL tin
)


@dataclass
class Board:
    """A rendered board: editable layer masks plus textures and a description."""

    description: BoardDescription
    raster: Raster
    copper: np.ndarray
    holes: np.ndarray
    silk: np.ndarray
    substrate_shade: np.ndarray
    copper_shade: np.ndarray
    substrate_color: np.ndarray
    copper_color: np.ndarray
    silk_color: np.ndarray

    @property
    def image(self) -> np.ndarray:
        """The composed RGB image as uint8 (canvas size, includes margin)."""
        return np.clip(self.compose() + 0.5, 0, 255).astype(np.uint8)

    def copy(self) -> Board:
        """Deep-copy editable layers and description; textures are shared."""
        return Board(
            description=copy.deepcopy(self.description),
            raster=self.raster,
            copper=self.copper.copy(),
            holes=self.holes.copy(),
            silk=self.silk.copy(),
            substrate_shade=self.substrate_shade,
            copper_shade=self.copper_shade,
            substrate_color=self.substrate_color,
            copper_color=self.copper_color,
            silk_color=self.silk_color,
        )

    def trace_mask(self, trace: Trace) -> np.ndarray:
        """Render one trace alone at canvas resolution."""
        m = self.raster.blank()
        self.raster.polyline(m, trace.points, trace.width)
        return m

    def net_map(self, scale: float = CHECK_SCALE) -> tuple[Raster, np.ndarray]:
        """Rasterize copper as net ids (0 = bare substrate) at a coarse scale."""
        r = Raster(scale)
        out = np.zeros((r.side, r.side), np.int32)
        for t in self.description.traces:
            m = r.blank()
            r.polyline(m, t.points, t.width)
            out[m > 127] = t.net
        for p in self.description.pads:
            m = r.blank()
            r.pad(m, p)
            out[m > 127] = p.net
        return r, out

    def compose(self) -> np.ndarray:
        """Composite the layers into a float32 RGB image in [0, 255]."""
        s = self.raster.scale
        cu = self.copper.astype(np.float32) / 255.0
        halo = cv2.GaussianBlur(cu, (0, 0), 0.012 * s)
        edge = cv2.GaussianBlur(cu, (0, 0), 0.004 * s)
        sub = self.substrate_shade * (1.0 + 0.18 * halo)
        img = sub[..., None] * self.substrate_color
        cop = (self.copper_shade * (0.72 + 0.28 * edge))[..., None] * self.copper_color
        img = img * (1 - cu[..., None]) + cop * cu[..., None]
        h = (self.holes.astype(np.float32) / 255.0)[..., None]
        img = img * (1 - h) + np.float32(16.0) * h
        sk = (self.silk.astype(np.float32) / 255.0 * (1 - cu))[..., None]
        img = img * (1 - sk) + self.silk_color * sk
        return img.astype(np.float32)


def _noise(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)


def _textures(rng: np.random.Generator, raster: Raster) -> tuple[np.ndarray, np.ndarray]:
    side, s = raster.side, raster.scale
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / np.float32(s)
    ang = float(rng.choice([0.0, math.pi / 4])) + rng.uniform(-0.1, 0.1)
    period = rng.uniform(0.025, 0.04)
    xr = xx * math.cos(ang) + yy * math.sin(ang)
    yr = -xx * math.sin(ang) + yy * math.cos(ang)
    weave = np.sin(2 * np.pi * xr / period) * np.sin(2 * np.pi * yr / period)
    grain = cv2.GaussianBlur(rng.standard_normal((side, side)).astype(np.float32), (0, 0), max(0.8, 0.002 * s))
    sub = 1.0 + 0.06 * _noise(rng, side, 6) + rng.uniform(0.02, 0.045) * weave + 0.05 * grain
    cop = 1.0 + 0.07 * _noise(rng, side, 5) + 0.04 * grain
    return sub.astype(np.float32), cop.astype(np.float32)


def render_board(rng: np.random.Generator, scale: float) -> Board:
    """Render a random bare board.

    Args:
        rng: Random generator; the only source of randomness.
        scale: Render resolution in pixels per board unit.

    Returns:
        The board with editable layers; ``board.image`` is the composed RGB image
        and ``board.description`` lists the traces, pads and silkscreen drawn.
    """
    desc = layout(rng)
    raster = Raster(scale)
    copper, holes, silk = raster.blank(), raster.blank(), raster.blank()
    for t in desc.traces:
        raster.polyline(copper, t.points, t.width)
    for p in desc.pads:
        raster.pad(copper, p)
        if p.has_hole:
            raster.disc(holes, p.center, p.hole_radius)
    thick = max(1, int(round(0.008 * scale)))
    for x0, y0, x1, y1 in desc.silk_boxes:
        pts = np.array([raster.fix(q) for q in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], np.int32)
        cv2.polylines(silk, [pts], True, 255, thick, cv2.LINE_AA, _SHIFT)
    for (x, y), label, h in desc.silk_text:
        fs = h * scale / 22.0
        org = tuple(int(round(v)) for v in raster.px((x, y)))
        cv2.putText(silk, label, org, cv2.FONT_HERSHEY_SIMPLEX, fs, 255, max(1, int(round(fs * 2))), cv2.LINE_AA)
    mask_kind = str(rng.choice(["green", "blue", "black"], p=[0.8, 0.1, 0.1]))
    lo, hi = (np.array(c, np.float32) for c in _MASK_COLORS[mask_kind])
    sub_color = lo + (hi - lo) * np.float32(rng.random())
    cu_idx = int(rng.choice(len(_COPPER_COLORS), p=[w for _, w in _COPPER_COLORS]))
    cu_color = np.array(_COPPER_COLORS[cu_idx][0], np.float32) * np.float32(rng.uniform(0.9, 1.05))
    silk_color = np.array((235, 235, 225), np.float32) * np.float32(rng.uniform(0.85, 1.0))
    sub_shade, cu_shade = _textures(rng, raster)
    return Board(
        desc, raster, copper, holes, silk, sub_shade, cu_shade, sub_color, np.clip(cu_color, 0, 255), silk_color
    )
