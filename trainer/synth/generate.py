"""Synthetic PCB defect dataset generation (one folder per class, PNG + JSON sidecar)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from .board import render_board
from .defects import DEFECTS, DefectPlacementError
from .imaging import PixelBox, apply_imaging, frame_view, sample_imaging, supersample, transform_box, view_window

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("ok", "missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper")
MIN_SIZE, MAX_SIZE = 32, 1024
DEFAULT_VIEW = 0.3  # an inspection close-up aimed at the defect, as a camera ROI on a line would be
_MAX_TRIES = 30


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    out: Path
    classes: tuple[str, ...]
    per_class: int
    size: int
    seed: int
    count: int


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")


def _check_class(cls: str) -> None:
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; expected one of {', '.join(CLASSES)}")


def render_pair(
    cls: str, *, size: int, rng: np.random.Generator, view: float = DEFAULT_VIEW
) -> tuple[np.ndarray, np.ndarray, PixelBox | None]:
    """Render one board with and without its defect under identical imaging.

    Consumes ``rng`` exactly like :func:`render_sample`, so the defective image
    equals ``render_sample`` for the same generator state.

    Returns:
        ``(clean, defective, box)``: RGB uint8 images of shape (size, size, 3) and
        the defect box ``(x0, y0, x1, y1)`` in pixels (x1/y1 exclusive), or None for "ok".
    """
    return _render(cls, size, rng, want_clean=True, view=view)  # type: ignore[return-value]


def render_sample(
    cls: str, *, size: int, rng: np.random.Generator, view: float = DEFAULT_VIEW
) -> tuple[np.ndarray, PixelBox | None]:
    """Render one synthetic PCB image of class ``cls``.

    Args:
        cls: One of :data:`CLASSES`.
        size: Output side in pixels.
        rng: Random generator; the only source of randomness.
        view: Fraction of the board side the camera sees (1 = the whole
            board, 0.5 = a close-up aimed at the defect).

    Returns:
        An RGB uint8 image of shape (size, size, 3) and the defect box
        ``(x0, y0, x1, y1)`` in pixels (x1/y1 exclusive), or None for "ok".
    """
    _, img, box = _render(cls, size, rng, want_clean=False, view=view)
    return img, box


def _check_view(view: float) -> None:
    if not 0.2 <= view <= 1.0:
        raise ValueError(f"view must be between 0.2 and 1.0 of the board side, got {view!r}")


def _render(
    cls: str, size: int, rng: np.random.Generator, *, want_clean: bool, view: float = DEFAULT_VIEW
) -> tuple[np.ndarray | None, np.ndarray, PixelBox | None]:
    _check_class(cls)
    _check_size(size)
    _check_view(view)
    scale = float(size * supersample(size))
    for attempt in range(_MAX_TRIES):
        board = render_board(rng, scale)
        clean = board.copy() if want_clean else None
        if cls == "ok":
            unit_box = None
            break
        try:
            unit_box = DEFECTS[cls](board, rng)
            break
        except DefectPlacementError as exc:
            log.debug("attempt %d: cannot place %s (%s); redrawing board", attempt, cls, exc)
    else:
        raise RuntimeError(f"could not place a {cls!r} defect after {_MAX_TRIES} boards")
    params = frame_view(sample_imaging(rng), view, unit_box, rng)
    window = view_window(params, board.raster, size)  # a close-up composes only what the camera sees
    img = apply_imaging(board.compose(window), params, board.raster, size)
    clean_img = apply_imaging(clean.compose(window), params, board.raster, size) if clean is not None else None
    box = None if unit_box is None else transform_box(unit_box, params, board.raster, size)
    if box is not None and (box[2] <= box[0] or box[3] <= box[1]):
        raise RuntimeError(f"defect box {box} is empty after clipping")
    return clean_img, img, box


def _write_sample(job: tuple[str, int], *, out: Path, size: int, seed: int, view: float) -> None:
    cls, i = job
    img, box = render_sample(cls, size=size, rng=np.random.default_rng([seed, CLASSES.index(cls), i]), view=view)
    stem = out / cls / f"{cls}_{i:04d}"
    if not cv2.imwrite(str(stem.with_suffix(".png")), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"failed to write {stem.with_suffix('.png')}")
    meta = {"class": cls, "box": None if box is None else list(box), "size": size, "seed": seed, "index": i}
    meta["view"] = view
    stem.with_suffix(".json").write_text(json.dumps(meta) + "\n", encoding="utf-8")


def generate_dataset(
    out: Path,
    *,
    per_class: int,
    size: int,
    seed: int,
    classes: Sequence[str] = CLASSES,
    view: float = DEFAULT_VIEW,
    workers: int = 1,
) -> SynthSummary:
    """Write ``out/<class>/<class>_<i:04d>.png`` images with ``.json`` sidecars.

    Image ``i`` of a class uses ``np.random.default_rng([seed, CLASSES.index(cls), i])``,
    so output is byte-identical per seed and independent of ``per_class`` and ``classes``.
    ``view`` is the fraction of the board side each image shows (see :func:`render_sample`).
    ``workers`` processes render in parallel; the bytes do not depend on it.

    Raises:
        ValueError: On ``per_class < 1``, ``size`` outside [32, 1024], a negative
            seed, or an unknown, duplicate or empty class list.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    _check_size(size)
    _check_view(view)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(classes, str):
        raise ValueError("classes must be a sequence of class names, not a single string")
    cls_list = tuple(classes)
    if not cls_list:
        raise ValueError("classes must not be empty")
    for cls in cls_list:
        _check_class(cls)
    if len(set(cls_list)) != len(cls_list):
        raise ValueError(f"duplicate class names in {cls_list}")
    out = Path(out)
    for cls in cls_list:
        (out / cls).mkdir(parents=True, exist_ok=True)
    jobs = [(cls, i) for cls in cls_list for i in range(per_class)]
    write = partial(_write_sample, out=out, size=size, seed=seed, view=view)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            list(pool.map(write, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    else:
        for job in jobs:
            write(job)
    count = len(jobs)
    log.info("synth: wrote %d images of %d classes to %s", count, len(cls_list), out)
    return SynthSummary(out=out, classes=cls_list, per_class=per_class, size=size, seed=seed, count=count)
