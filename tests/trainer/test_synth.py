"""Tests for the procedural synthetic PCB defect generator (trainer.synth)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.synth import CLASSES, SynthSummary, generate_dataset, render_sample
from trainer.synth.board import render_board
from trainer.synth.defects import DEFECTS, missing_hole
from trainer.synth.generate import render_pair
from trainer.synth.imaging import apply_imaging, frame_view, sample_imaging, supersample, view_window

DEFECT_CLASSES = [c for c in CLASSES if c != "ok"]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_public_api() -> None:
    assert CLASSES == ("ok", "missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper")
    assert set(DEFECTS) == set(DEFECT_CLASSES)


def test_dataset_layout_shapes_and_sidecars(tmp_path: Path) -> None:
    size, per_class = 64, 2
    summary = generate_dataset(tmp_path / "ds", per_class=per_class, size=size, seed=3)
    assert summary == SynthSummary(tmp_path / "ds", CLASSES, per_class, size, 3, per_class * len(CLASSES))
    for cls in CLASSES:
        cdir = tmp_path / "ds" / cls
        assert sorted(p.name for p in cdir.glob("*.png")) == [f"{cls}_{i:04d}.png" for i in range(per_class)]
        assert len(list(cdir.glob("*.json"))) == per_class
        for i in range(per_class):
            img = _read_rgb(cdir / f"{cls}_{i:04d}.png")
            assert img.shape == (size, size, 3) and img.dtype == np.uint8
            assert img.std() > 5  # not blank
            meta = json.loads((cdir / f"{cls}_{i:04d}.json").read_text())
            assert meta["class"] == cls and meta["size"] == size and meta["seed"] == 3 and meta["index"] == i
            if cls == "ok":
                assert meta["box"] is None
            else:
                x0, y0, x1, y1 = meta["box"]
                assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size


def test_png_is_rgb_render(tmp_path: Path) -> None:
    generate_dataset(tmp_path, per_class=1, size=64, seed=11, classes=("spur",))
    expected, box = render_sample("spur", size=64, rng=np.random.default_rng([11, CLASSES.index("spur"), 0]))
    np.testing.assert_array_equal(_read_rgb(tmp_path / "spur" / "spur_0000.png"), expected)
    assert json.loads((tmp_path / "spur" / "spur_0000.json").read_text())["box"] == list(box)


def test_deterministic_across_worker_counts_and_seed_sensitive(tmp_path: Path) -> None:
    kw = dict(per_class=2, size=64, classes=("ok", "short", "mouse_bite"))
    generate_dataset(tmp_path / "a", seed=5, **kw)
    generate_dataset(tmp_path / "b", seed=5, workers=2, **kw)
    generate_dataset(tmp_path / "c", seed=6, **kw)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    pngs = [k for k in a if k.endswith(".png")]
    assert len(pngs) == 6 and all(a[k] != c[k] for k in pngs)


def test_images_independent_of_per_class_and_class_subset(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "big", per_class=2, size=64, seed=9, classes=("open_circuit", "spur"))
    generate_dataset(tmp_path / "small", per_class=1, size=64, seed=9, classes=("spur",))
    name = "spur/spur_0000.png"
    assert (tmp_path / "big" / name).read_bytes() == (tmp_path / "small" / name).read_bytes()


@pytest.mark.parametrize("cls", DEFECT_CLASSES)
def test_defect_changes_lie_inside_box(cls: str) -> None:
    size = 96
    for k in range(3):
        clean, img, box = render_pair(cls, size=size, rng=np.random.default_rng([k, 42]), view=1.0)
        assert box is not None
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) / size
        # whole boards: defects are 5-20 % of the side (close-ups, the default view, enlarge them)
        assert 0.05 <= side <= 0.2, (cls, box)
        changed = np.abs(img.astype(np.int16) - clean.astype(np.int16)).max(axis=-1) > 30
        inside = np.zeros_like(changed)
        inside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
        assert changed.sum() >= 5, f"{cls}: defect barely changes the image"
        frac = (changed & inside).sum() / changed.sum()
        assert frac >= 0.9, f"{cls}: only {frac:.2f} of changed pixels inside {box}"
        # The defect must be a strong, local change: its box differs a lot on average.
        box_diff = np.abs(img[y0:y1, x0:x1].astype(float) - clean[y0:y1, x0:x1].astype(float)).max(axis=-1)
        assert box_diff.max() > 60


def test_ok_pair_identical_and_render_pair_matches_render_sample() -> None:
    clean, img, box = render_pair("ok", size=64, rng=np.random.default_rng(1))
    assert box is None
    np.testing.assert_array_equal(clean, img)
    _, img2, box2 = render_pair("short", size=64, rng=np.random.default_rng(2))
    img3, box3 = render_sample("short", size=64, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(img2, img3)
    assert box2 == box3


def test_board_description_and_missing_hole_targets_real_pad() -> None:
    rng = np.random.default_rng(0)
    board = render_board(rng, scale=256)
    desc = board.description
    assert desc.traces and desc.pads
    assert all(len(t.points) >= 2 and t.width > 0 for t in desc.traces)
    assert board.image.shape == (board.raster.side, board.raster.side, 3)
    holes_before = sum(p.has_hole for p in desc.pads)
    x0, y0, x1, y1 = missing_hole(board, rng)
    assert sum(p.has_hole for p in desc.pads) == holes_before - 1
    filled = [p for p in desc.pads if not p.has_hole and not p.square]
    assert any(x0 <= p.center[0] <= x1 and y0 <= p.center[1] <= y1 for p in filled)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(per_class=0, size=64, seed=0),
        dict(per_class=-3, size=64, seed=0),
        dict(per_class=1, size=31, seed=0),
        dict(per_class=1, size=1025, seed=0),
        dict(per_class=1, size=64, seed=-1),
        dict(per_class=1, size=64, seed=0, classes=("ok", "scratch")),
        dict(per_class=1, size=64, seed=0, classes=("ok", "ok")),
        dict(per_class=1, size=64, seed=0, classes=()),
        dict(per_class=1, size=64, seed=0, view=0.1),
        dict(per_class=1, size=64, seed=0, view=1.5),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_render_sample_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown class"):
        render_sample("scratch", size=64, rng=rng)
    with pytest.raises(ValueError, match="size"):
        render_sample("ok", size=16, rng=rng)


@pytest.mark.parametrize("cls", DEFECT_CLASSES)
def test_close_up_view_enlarges_the_defect_and_keeps_it_in_frame(cls: str) -> None:
    size = 96
    for k in range(3):
        _, whole = render_sample(cls, size=size, rng=np.random.default_rng([k, 7]), view=1.0)
        clean, img, close = render_pair(cls, size=size, rng=np.random.default_rng([k, 7]), view=0.3)
        assert whole is not None and close is not None
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        assert area(close) > 4 * area(whole), (cls, whole, close)
        x0, y0, x1, y1 = close
        assert x0 > 0 and y0 > 0 and x1 < size and y1 < size  # not cut by the frame
        changed = np.abs(img.astype(np.int16) - clean.astype(np.int16)).max(axis=-1) > 30
        inside = np.zeros_like(changed)
        inside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
        assert (changed & inside).sum() >= 0.9 * changed.sum() > 0


@pytest.mark.parametrize("seed", range(4))
def test_a_close_up_composes_only_what_the_camera_sees_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = 96
    board = render_board(rng, scale=size * supersample(size))
    params = frame_view(sample_imaging(rng), 0.3, None, rng)
    window = view_window(params, board.raster, size)
    assert window is not None
    y0, y1, x0, x1 = window
    side = board.raster.side
    assert (y1 - y0) * (x1 - x0) < 0.2 * side * side  # the point: a close-up needs a fifth of the canvas at most
    whole, part = board.compose(), board.compose(window)
    np.testing.assert_array_equal(part[y0:y1, x0:x1], whole[y0:y1, x0:x1])
    assert not part[:y0].any() and not part[y1:].any()  # nothing composed outside the window
    image = apply_imaging(part, params, board.raster, size)
    np.testing.assert_array_equal(image, apply_imaging(whole, params, board.raster, size))
