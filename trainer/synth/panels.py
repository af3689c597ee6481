"""Synthetic whole panels: a grid of boards as an AOI camera sees them, 0 to a few defects, VOC XML boxes.

A panel is ``grid`` = columns x rows boards of ``cell`` pixels each (whole
boards, :func:`~trainer.synth.render_sample` at view 1), separated by a
``gap`` of panel rail. ``0..max_defects`` of its boards carry one defect
each, of a class drawn at random; at ``cell`` 200 on an 8 x 6 grid the
panel is 1638 x 1226 pixels and a spur about 1 % of its side. Each panel is
written as ``panel_<i>.png`` with ``panel_<i>.xml`` in Pascal VOC (what
``edge-train tiles`` reads); panel ``i`` of a seed is the same bytes
whatever the count and the workers.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from trainer.boards.annotations import Box, write_voc
from trainer.synth.generate import CLASSES, render_sample

__all__ = ["PanelSummary", "generate_panels", "render_panel"]

log = logging.getLogger(__name__)

RAIL = (38, 44, 40)  # the panel's frame between boards, RGB


@dataclass(frozen=True)
class PanelSummary:
    """What :func:`generate_panels` wrote."""

    out: Path
    count: int
    width: int
    height: int
    defects: int


def render_panel(
    rng: np.random.Generator, *, grid: tuple[int, int], cell: int, gap: int = 6, max_defects: int = 3
) -> tuple[np.ndarray, list[Box]]:
    """One panel (RGB) and its defect boxes in panel pixels (``x1``/``y1`` exclusive).

    Raises:
        ValueError: a grid, cell or defect count out of range.
    """
    columns, rows = grid
    if columns < 1 or rows < 1 or not 0 <= max_defects <= columns * rows or gap < 0:
        raise ValueError(f"need a grid of at least 1 x 1 holding max_defects boards, got {grid}, {max_defects}")
    width, height = columns * cell + (columns + 1) * gap, rows * cell + (rows + 1) * gap
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = RAIL
    count = int(rng.integers(0, max_defects + 1))
    defective = set(rng.choice(columns * rows, size=count, replace=False).tolist())
    kinds = CLASSES[1:]
    boxes = []
    for index in range(columns * rows):
        label = kinds[int(rng.integers(len(kinds)))] if index in defective else "ok"
        board_rng = np.random.default_rng(rng.integers(2**63))
        image, box = render_sample(label, size=cell, rng=board_rng, view=1.0)
        x = gap + (index % columns) * (cell + gap)
        y = gap + (index // columns) * (cell + gap)
        panel[y : y + cell, x : x + cell] = image
        if box is not None:
            boxes.append(Box(label, x + box[0], y + box[1], x + box[2], y + box[3]))
    return panel, boxes


def _write_panel(
    index: int, *, out: Path, seed: int, grid: tuple[int, int], cell: int, max_defects: int
) -> tuple[int, int, int]:
    panel, boxes = render_panel(np.random.default_rng([seed, index]), grid=grid, cell=cell, max_defects=max_defects)
    name = f"panel_{index:04d}.png"
    if not cv2.imwrite(str(out / name), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
        raise OSError(f"failed to write {out / name}")
    write_voc(out / f"panel_{index:04d}.xml", name, panel.shape[1], panel.shape[0], boxes)
    return panel.shape[1], panel.shape[0], len(boxes)


def generate_panels(
    out: Path,
    *,
    count: int,
    seed: int,
    grid: tuple[int, int] = (8, 6),
    cell: int = 200,
    max_defects: int = 3,
    workers: int = 1,
) -> PanelSummary:
    """Write ``count`` panels with their VOC XML into ``out``, ``workers`` processes at a time.

    Raises:
        ValueError: ``count`` below 1, or what :func:`render_panel` refuses.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    out.mkdir(parents=True, exist_ok=True)
    write = partial(_write_panel, out=out, seed=seed, grid=grid, cell=cell, max_defects=max_defects)
    if workers > 1 and count > 1:
        with ProcessPoolExecutor(min(workers, count)) as pool:
            written = list(pool.map(write, range(count)))
    else:
        written = [write(index) for index in range(count)]
    width, height, _ = written[0]
    defects = sum(n for _, _, n in written)
    log.info("synth: wrote %d panels of %d x %d px with %d defects to %s", count, width, height, defects, out)
    return PanelSummary(out=out, count=count, width=width, height=height, defects=defects)
