"""Training tiles from annotated board photos, split by board, as the image folder ``edge-train fit`` reads.

Each marked defect gives ``per_box`` tiles of ``tile`` x ``tile`` photo
pixels, each placed at random so that the box lies inside it (a defect is
not always centred; a box larger than a tile is centred and cut); each
board gives ``ok_per_board`` tiles that touch no box, as the ``ok`` class.
Every tile keeps its defect's box in tile pixels in a sidecar ``.json``
(``{"box": [x0, y0, x1, y1], "board": ..., "origin": [x, y]}``), so box and
cell guidance work on tiles as on close-ups. A tile cut around one defect
may show part of a neighbouring one.

The split is by board: every tile of a board goes to ``train/`` or to
``val/``, never both, so no board is seen in training and scored in
validation. Each class keeps at least one board on each side.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from trainer.boards.annotations import Board, BoardScan, Box
from trainer.data import load_rgb
from trainer.errors import DatasetError

__all__ = ["TileSummary", "split_boards", "write_tiles"]

log = logging.getLogger(__name__)

_OK_TRIES = 50  # random places tried for each ok tile before the board gives fewer


@dataclass
class TileSummary:
    """What :func:`write_tiles` wrote (also saved as ``tiles.json`` in the output folder)."""

    out: str
    tile: int
    classes: list[str]
    boards: dict[str, list[str]]
    boxes: dict[str, int] = field(default_factory=dict)
    tiles: dict[str, dict[str, int]] = field(default_factory=dict)
    clipped_boxes: int = 0
    dropped_boxes: int = 0
    skipped_files: list[str] = field(default_factory=list)
    unreadable_photos: list[str] = field(default_factory=list)


def _classes_of(board: Board) -> set[str]:
    return {box.label for box in board.boxes}


def split_boards(boards: Sequence[Board], val_fraction: float, seed: int) -> tuple[list[Board], list[Board]]:
    """Boards to train on and to validate on, about ``val_fraction`` of them, seeded.

    Every class keeps a board on each side: for each class, rarest first, a
    board is moved to validation when none there has it yet and every class
    of that board keeps a training board; then boards are added in a seeded
    order until the fraction is reached.

    Raises:
        DatasetError: a class is marked on a single board (it cannot be on both sides).
    """
    per_class: dict[str, int] = {}
    for board in boards:
        for label in _classes_of(board):
            per_class[label] = per_class.get(label, 0) + 1
    alone = sorted(label for label, count in per_class.items() if count < 2)
    if alone:
        raise DatasetError(
            f"class(es) {alone} are marked on one board only; the split by board needs two (one for validation)"
        )
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(boards))]
    classes = [_classes_of(board) for board in boards]
    val: set[int] = set()

    def movable(index: int) -> bool:
        """Off to validation without leaving one of its classes without a training board."""
        rest = [i for i in order if i != index and i not in val]
        return index not in val and all(any(label in classes[i] for i in rest) for label in classes[index])

    for label in sorted(per_class, key=lambda name: (per_class[name], name)):
        if not any(label in classes[i] for i in val):
            candidate = next((i for i in order if label in classes[i] and movable(i)), None)
            if candidate is not None:
                val.add(candidate)
    target = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
    for index in order:
        if len(val) >= target:
            break
        if movable(index):
            val.add(index)
    return [boards[i] for i in order if i not in val], [boards[i] for i in order if i in val]


def _origin_around(box: Box, tile: int, width: int, height: int, rng: np.random.Generator) -> tuple[int, int]:
    """A tile's top-left corner with ``box`` inside it (centred when the box is larger), inside the photo."""

    def axis(lo: float, hi: float, size: int) -> int:
        start = (lo + hi - tile) / 2 if hi - lo >= tile else rng.uniform(hi - tile, lo)
        return int(round(min(max(start, 0.0), max(size - tile, 0))))

    return axis(box.x0, box.x1, width), axis(box.y0, box.y1, height)


def _ok_origin(board: Board, tile: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """A tile's top-left corner touching no box, or None when random places keep hitting one."""
    for _ in range(_OK_TRIES):
        x = int(rng.integers(0, max(board.width - tile, 0) + 1))
        y = int(rng.integers(0, max(board.height - tile, 0) + 1))
        if not any(box.intersects(x, y, x + tile, y + tile) for box in board.boxes):
            return x, y
    return None


def _cut(image: np.ndarray, x: int, y: int, tile: int) -> np.ndarray:
    """``tile`` x ``tile`` pixels from ``(x, y)``; a photo smaller than a tile is padded with black."""
    crop = image[y : y + tile, x : x + tile]
    short_y, short_x = tile - crop.shape[0], tile - crop.shape[1]
    if short_x or short_y:
        crop = cv2.copyMakeBorder(crop, 0, short_y, 0, short_x, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return crop


def _write(folder: Path, name: str, pixels: np.ndarray, sidecar: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
        raise DatasetError(f"{folder / name}.png: cannot write the tile (is the disk full?)")
    (folder / f"{name}.json").write_text(json.dumps(sidecar))


def _board_tiles(
    board: Board, image: np.ndarray, tile: int, per_box: int, ok_per_board: int, rng: np.random.Generator
) -> list[tuple[str, np.ndarray, dict]]:
    """(class, pixels, sidecar) of every tile of one board."""
    tiles = []
    for box in board.boxes:
        for _ in range(per_box):
            x, y = _origin_around(box, tile, board.width, board.height, rng)
            inside = [max(box.x0 - x, 0), max(box.y0 - y, 0), min(box.x1 - x, tile), min(box.y1 - y, tile)]
            sidecar = {"box": [round(v, 2) for v in inside], "board": board.name, "origin": [x, y]}
            tiles.append((box.label, _cut(image, x, y, tile), sidecar))
    for _ in range(ok_per_board):
        origin = _ok_origin(board, tile, rng)
        if origin is None:
            log.warning("%s: no room for another defect-free tile of %d px", board.image, tile)
            break
        tiles.append(("ok", _cut(image, *origin, tile), {"board": board.name, "origin": list(origin)}))
    return tiles


def write_tiles(
    scan: BoardScan,
    out: Path,
    *,
    tile: int,
    per_box: int = 2,
    ok_per_board: int = 2,
    val_fraction: float = 0.2,
    seed: int = 0,
    ok_class: str = "ok",
) -> TileSummary:
    """Cut every board of ``scan`` into tiles under ``out/train/<class>/`` and ``out/val/<class>/``.

    Raises:
        DatasetError: ``out`` is not empty, a class would be missing from one side of the split, ``ok_class``
            is also a defect class, or a tile cannot be written.
        ValueError: ``tile``, ``per_box`` or ``ok_per_board`` is out of range.
    """
    if tile < 16 or per_box < 1 or ok_per_board < 0:
        raise ValueError(
            f"tile must be >= 16 px, per_box >= 1, ok_per_board >= 0 (got {tile}, {per_box}, {ok_per_board})"
        )
    if ok_class in scan.classes:
        raise DatasetError(f"'{ok_class}' is the defect-free class; a box may not be marked with it")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty: tiles go into a new folder")
    train, val = split_boards(scan.boards, val_fraction, seed)
    summary = TileSummary(
        out=str(out),
        tile=tile,
        classes=[ok_class, *scan.classes],
        boards={"train": [b.name for b in train], "val": [b.name for b in val]},
        boxes=scan.boxes_per_class(),
        clipped_boxes=scan.clipped,
        dropped_boxes=scan.dropped,
        skipped_files=scan.skipped,
    )
    rng = np.random.default_rng(seed)
    names: dict[str, int] = {}  # photos of one name in several folders get their tiles numbered apart
    for part, boards in (("train", train), ("val", val)):
        counts: dict[str, int] = {}
        for board in boards:
            names[board.name] = names.get(board.name, 0) + 1
            stem = board.name if names[board.name] == 1 else f"{board.name}-{names[board.name]}"
            image = load_rgb(board.image)
            if image is None:
                log.warning("skipping %s: the photo cannot be decoded", board.image)
                summary.unreadable_photos.append(str(board.image))
                continue
            for index, (label, pixels, sidecar) in enumerate(
                _board_tiles(board, image, tile, per_box, ok_per_board, rng)
            ):
                name = ok_class if label == "ok" else label
                _write(out / part / name, f"{stem}_{index:03d}", pixels, sidecar)
                counts[name] = counts.get(name, 0) + 1
        summary.tiles[part] = counts
    (out / "tiles.json").write_text(json.dumps(summary.__dict__, indent=2))
    return summary
