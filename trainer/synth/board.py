"""Procedural bare printed-circuit-board renderer.

A board is laid out by :func:`~trainer.synth.layout.layout` in board units (see
:mod:`~trainer.synth.geometry`) and rendered into separate layer masks (copper,
drill holes, silkscreen) so defect injectors can edit them before
:meth:`Board.compose` produces the image. A close-up sees a small part of the
canvas, so composition and textures can be limited to a window of it: every
pixel inside comes out exactly as in the whole canvas.
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
    "Textures",
    "Trace",
    "Window",
    "render_board",
]

Window = tuple[int, int, int, int]  # canvas pixels (y0, y1, x0, x1), end exclusive

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


def _blur(image: np.ndarray, sigma: float, window: Window) -> np.ndarray:
    """``cv2.GaussianBlur(image, sigma)`` over ``window`` only, bit for bit.

    The blur reads a margin beyond its kernel's reach (OpenCV's float kernels
    reach 4 sigma); where the margin meets the canvas edge, the edge's
    reflection is the whole canvas's.
    """
    y0, y1, x0, x1 = window
    reach = math.ceil(4 * sigma) + 2
    side_y, side_x = image.shape[:2]
    ty0, tx0 = max(0, y0 - reach), max(0, x0 - reach)
    blurred = cv2.GaussianBlur(image[ty0 : min(side_y, y1 + reach), tx0 : min(side_x, x1 + reach)], (0, 0), sigma)
    return blurred[y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]


@dataclass(frozen=True, eq=False)
class Textures:
    """The substrate's and copper's brightness textures, drawn once, computed per window."""

    scale: float
    angle: float
    period: float
    weave_amount: float
    grain: np.ndarray  # white noise over the canvas, blurred per window
    substrate_noise: np.ndarray  # coarse noise, canvas-sized
    copper_noise: np.ndarray

    def shades(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Substrate and copper shade (float32, around 1) over ``window``."""
        y0, y1, x0, x1 = window
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) / np.float32(self.scale)
        xr = xx * math.cos(self.angle) + yy * math.sin(self.angle)
        yr = -xx * math.sin(self.angle) + yy * math.cos(self.angle)
        weave = np.sin(2 * np.pi * xr / self.period) * np.sin(2 * np.pi * yr / self.period)
        grain = _blur(self.grain, max(0.8, 0.002 * self.scale), window)
        sub = 1.0 + 0.06 * self.substrate_noise[y0:y1, x0:x1] + self.weave_amount * weave + 0.05 * grain
        cop = 1.0 + 0.07 * self.copper_noise[y0:y1, x0:x1] + 0.04 * grain
        return sub.astype(np.float32), cop.astype(np.float32)


@dataclass
class Board:
    """A rendered board: editable layer masks plus textures and a description."""

    description: BoardDescription
    raster: Raster
    copper: np.ndarray
    holes: np.ndarray
    silk: np.ndarray
    textures: Textures
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
            textures=self.textures,
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

    def compose(self, window: Window | None = None) -> np.ndarray:
        """Composite the layers into a float32 RGB canvas in [0, 255].

        With ``window``, only its pixels are composed (the rest stay 0); they
        equal the whole canvas's exactly.
        """
        s, side = self.raster.scale, self.raster.side
        window = window or (0, side, 0, side)
        y0, y1, x0, x1 = window
        copper = self.copper.astype(np.float32) / 255.0
        cu = copper[y0:y1, x0:x1]
        halo = _blur(copper, 0.012 * s, window)
        edge = _blur(copper, 0.004 * s, window)
        substrate_shade, copper_shade = self.textures.shades(window)
        sub = substrate_shade * (1.0 + 0.18 * halo)
        img = sub[..., None] * self.substrate_color
        cop = (copper_shade * (0.72 + 0.28 * edge))[..., None] * self.copper_color
        img = img * (1 - cu[..., None]) + cop * cu[..., None]
        h = (self.holes[y0:y1, x0:x1].astype(np.float32) / 255.0)[..., None]
        img = img * (1 - h) + np.float32(16.0) * h
        sk = (self.silk[y0:y1, x0:x1].astype(np.float32) / 255.0 * (1 - cu))[..., None]
        img = img * (1 - sk) + self.silk_color * sk
        canvas = np.zeros((side, side, 3), np.float32)
        canvas[y0:y1, x0:x1] = img
        return canvas


def _noise(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)


def _textures(rng: np.random.Generator, raster: Raster) -> Textures:
    side = raster.side
    angle = float(rng.choice([0.0, math.pi / 4])) + rng.uniform(-0.1, 0.1)
    period = rng.uniform(0.025, 0.04)
    grain = rng.standard_normal((side, side)).astype(np.float32)
    substrate_noise = _noise(rng, side, 6)
    weave_amount = rng.uniform(0.02, 0.045)
    copper_noise = _noise(rng, side, 5)
    return Textures(raster.scale, angle, period, weave_amount, grain, substrate_noise, copper_noise)


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
    textures = _textures(rng, raster)
    return Board(desc, raster, copper, holes, silk, textures, sub_color, np.clip(cu_color, 0, 255), silk_color)
