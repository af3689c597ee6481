import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_inspector.preprocess import InputSpec
from trainer.data import (
    ImageDataset,
    Sample,
    defect_box,
    discover,
    fingerprint,
    load_rgb,
    scan_folder,
    stratified_split,
)
from trainer.errors import DatasetError
from trainer.transforms import train_transform


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _folder(root: Path, counts: dict[str, int], size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        for i in range(count):
            _write(root / name / f"{i}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def test_stratified_split_keeps_class_ratios_and_is_seeded() -> None:
    samples = [Sample(Path(f"a{i}.png"), 0) for i in range(50)] + [Sample(Path(f"b{i}.png"), 1) for i in range(10)]
    train, val = stratified_split(samples, 0.2, seed=3)
    assert sum(s.label == 0 for s in val) == 10 and sum(s.label == 1 for s in val) == 2
    assert not {s.path for s in train} & {s.path for s in val}
    assert len(train) + len(val) == 60
    assert stratified_split(list(reversed(samples)), 0.2, seed=3)[1] == val  # order does not matter
    assert stratified_split(samples, 0.2, seed=4)[1] != val


def test_tiny_classes_keep_one_image_on_each_side() -> None:
    samples = [Sample(Path("a0.png"), 0), Sample(Path("a1.png"), 0), Sample(Path("b0.png"), 1)]
    train, val = stratified_split(samples, 0.5, seed=0)
    assert sorted(s.label for s in train) == [0, 1] and [s.label for s in val] == [0]


def test_corrupt_image_skipped_with_warning_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _folder(tmp_path / "data", {"ok": 3, "short": 3})
    bad = root / "short" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "ok" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        classes, samples = scan_folder(root)
    assert classes == ["ok", "short"] and len(samples) == 6
    assert str(bad) in caplog.text and "empty.jpg" in caplog.text


def test_one_class_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="at least two"):
        scan_folder(_folder(tmp_path, {"ok": 3}))


def test_class_without_readable_images_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"ok": 3, "spur": 2})
    (root / "short").mkdir()
    (root / "short" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="class 'short' has no readable images"):
        scan_folder(root)


def test_missing_folder_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        discover(tmp_path / "nope", val_fraction=0.2, seed=0)


def test_given_train_val_split_is_used(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"ok": 4, "short": 3})
    _folder(tmp_path / "val", {"ok": 2, "short": 1})
    split = discover(tmp_path, val_fraction=0.5, seed=0)
    assert split.given_split and split.classes == ["ok", "short"]
    assert len(split.train) == 7 and len(split.val) == 3


def test_validation_class_must_be_known(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"ok": 2, "short": 2})
    _folder(tmp_path / "val", {"ok": 1, "spur": 1})
    with pytest.raises(DatasetError, match=r"\['spur'\]"):
        discover(tmp_path, val_fraction=0.5, seed=0)


def test_grayscale_rgba_and_16_bit_become_rgb(tmp_path: Path) -> None:
    gray = _write(tmp_path / "g.png", np.full((8, 8), 200, np.uint8))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # blue in OpenCV's BGRA order
    rgba[..., 3] = 10
    rgba_path = _write(tmp_path / "a.png", rgba)
    deep = _write(tmp_path / "d.png", np.full((8, 8, 3), 65535, np.uint16))
    assert load_rgb(gray).shape == (8, 8, 3) and load_rgb(gray)[0, 0].tolist() == [200, 200, 200]
    assert load_rgb(rgba_path)[0, 0].tolist() == [0, 0, 255]
    assert load_rgb(deep).dtype == np.uint8 and load_rgb(deep)[0, 0].tolist() == [255, 255, 255]


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"ok": 2, "short": 2})
    _, samples = scan_folder(root)
    first = fingerprint(samples, root)
    assert fingerprint(list(reversed(samples)), root) == first
    _write(root / "ok" / "0.png", np.zeros((16, 16, 3), np.uint8))
    assert fingerprint(samples, root) != first


def test_a_sidecar_box_follows_the_augmented_image(tmp_path: Path) -> None:
    image = np.zeros((80, 100, 3), np.uint8)
    image[10:30, 60:85] = 255  # the "defect": a white patch, boxed in the sidecar
    boxed = Sample(_write(tmp_path / "short" / "a.png", image), 1)
    boxed.path.with_suffix(".json").write_text(json.dumps({"box": [60, 10, 85, 30]}))
    plain = Sample(_write(tmp_path / "ok" / "b.png", image), 0)
    spec = InputSpec.for_size(64)
    dataset = ImageDataset([boxed, plain], train_transform(spec, boxes=True), boxes=True)
    for _ in range(20):  # random crops, flips and quarter turns
        tensor, label, box = dataset[0]
        assert label == 1
        if torch.isnan(box).any():
            continue  # the crop cut most of the box away
        x0, y0, x1, y1 = box.round().int().tolist()
        bright = tensor.mean(dim=0) > 0  # normalised: white is positive, black negative
        assert bright[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].all()
        assert bright.sum() <= (x1 - x0 + 2) * (y1 - y0 + 2)  # and nothing bright outside it
    assert torch.isnan(dataset[1][2]).all()
    assert len(ImageDataset([boxed], train_transform(spec))[0]) == 2  # without boxes: (image, label)


def test_defect_box_reads_the_sidecar_and_ignores_a_bad_one(tmp_path: Path) -> None:
    sample = Sample(_write(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8)), 0)
    assert defect_box(sample) is None
    for bad in ("not json", '{"box": [1, 2]}', '{"box": [5, 5, 2, 2]}', "[1, 2, 3, 4]"):
        sample.path.with_suffix(".json").write_text(bad)
        assert defect_box(sample) is None, bad
    sample.path.with_suffix(".json").write_text('{"class": "short", "box": [1, 2, 6, 7]}')
    assert defect_box(sample) == (1.0, 2.0, 6.0, 7.0)
