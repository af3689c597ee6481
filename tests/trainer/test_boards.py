"""Board photos with VOC or COCO boxes, cut into tiles split by board: real files, broken ones among them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.boards import Box, load_class_map, scan_boards, split_boards, write_tiles
from trainer.cli import main
from trainer.data import defect_box, discover, load_rgb
from trainer.errors import DatasetError
from trainer.synth import CLASSES
from trainer.synth.panels import generate_panels, render_panel

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _photo(path: Path, width: int, height: int, boxes: list[tuple[tuple[int, int, int], tuple[int, ...]]]) -> None:
    """A grey board photo with each defect painted as a solid box (x0, y0, x1, y1; x1/y1 exclusive)."""
    pixels = np.full((height, width, 3), 120, np.uint8)
    for colour, (x0, y0, x1, y1) in boxes:
        pixels[max(y0, 0) : y1, max(x0, 0) : x1] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))


def _voc(path: Path, image: str, width: int, height: int, objects: list[tuple[str, tuple[int, ...]]]) -> None:
    """VOC corners are 1-based and inclusive: pixels x0..x1-1 are xmin = x0 + 1 .. xmax = x1."""
    marked = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><filename>{image}</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{marked}</annotation>"
    )


def _boards(root: Path) -> None:
    """Six 400 x 300 boards as the public PCB set lays them out (Annotations/ and images/ apart): shorts in red,
    spurs in blue, one box running off the photo; one broken XML and one XML whose photo is missing."""
    layout = {
        "b1": [("Short", RED, (40, 50, 70, 80))],
        "b2": [("Short", RED, (300, 200, 330, 240)), ("Spur", BLUE, (100, 60, 120, 75))],
        "b3": [("Spur", BLUE, (200, 100, 230, 120))],
        "b4": [("Short", RED, (380, 280, 420, 320))],  # runs off the bottom right: clipped to 400 x 300
        "b5": [("Spur", BLUE, (10, 10, 30, 25))],
        "b6": [],  # a defect-free board
    }
    for name, marks in layout.items():
        _photo(root / "images" / f"{name}.png", 400, 300, [(colour, box) for _, colour, box in marks])
        _voc(root / "Annotations" / f"{name}.xml", f"{name}.png", 400, 300, [(n, box) for n, _, box in marks])
    (root / "Annotations" / "broken.xml").write_text("<annotation><object>")
    _voc(root / "Annotations" / "lost.xml", "lost.png", 400, 300, [("Short", (1, 1, 9, 9))])


def test_voc_boxes_are_pixels_clipped_and_broken_files_skipped_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _boards(tmp_path)
    caplog.set_level(logging.WARNING, logger="trainer.boards")
    scan = scan_boards(tmp_path)
    assert sorted(b.name for b in scan.boards) == ["b1", "b2", "b3", "b4", "b5", "b6"]
    assert scan.classes == ["Short", "Spur"] and scan.boxes_per_class() == {"Short": 3, "Spur": 3}
    b1 = next(b for b in scan.boards if b.name == "b1")
    assert b1.boxes == (Box("Short", 40, 50, 70, 80),) and (b1.width, b1.height) == (400, 300)
    b4 = next(b for b in scan.boards if b.name == "b4")
    assert b4.boxes == (Box("Short", 380, 280, 400, 300),) and scan.clipped == 1
    assert sorted(Path(p.split(":")[0]).name for p in scan.skipped) == ["broken.xml", "lost.xml"]
    assert "broken.xml" in caplog.text and "lost.png" in caplog.text


def test_the_class_map_renames_and_refuses_a_class_it_lacks(tmp_path: Path) -> None:
    _boards(tmp_path / "boards")
    mapping = tmp_path / "classes.yaml"
    mapping.write_text("Short: short\nSpur: spur\n")
    assert scan_boards(tmp_path / "boards", load_class_map(mapping)).classes == ["short", "spur"]
    mapping.write_text("Short: short\n")
    with pytest.raises(DatasetError, match=r"\['Spur'\] are not in the class map"):
        scan_boards(tmp_path / "boards", load_class_map(mapping))
    mapping.write_text("[not, a, mapping]")
    with pytest.raises(DatasetError, match="expected a mapping"):
        load_class_map(mapping)


def test_coco_json_with_a_broken_file_beside_it(tmp_path: Path) -> None:
    _photo(tmp_path / "a.png", 200, 100, [(RED, (10, 20, 40, 50))])
    _photo(tmp_path / "b.png", 200, 100, [])
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.png", "width": 200, "height": 100},
            {"id": 3, "file_name": "gone.png", "width": 200, "height": 100},  # its photo was never copied
        ],
        "annotations": [
            {"image_id": 1, "category_id": 7, "bbox": [10, 20, 30, 30]},
            {"image_id": 1, "category_id": 7, "bbox": [-50, -50, 10, 10]},
        ],
        "categories": [{"id": 7, "name": "short"}],
    }
    (tmp_path / "boards.json").write_text(json.dumps(coco))
    (tmp_path / "half.json").write_text('{"images": [')
    scan = scan_boards(tmp_path)
    a, b = sorted(scan.boards, key=lambda board: board.name)
    assert a.boxes == (Box("short", 10, 20, 40, 50),) and b.boxes == ()
    assert scan.dropped == 1  # the box wholly outside the photo
    assert sorted(Path(p).name for p in scan.skipped) == ["boards.json: gone.png", "half.json"]


def test_no_usable_annotation_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.xml").write_text("not xml")
    with pytest.raises(DatasetError, match="no board photo with a readable VOC"):
        scan_boards(tmp_path)


def test_tiles_hold_their_defect_ok_tiles_none_and_no_board_is_on_both_sides(tmp_path: Path) -> None:
    _boards(tmp_path / "boards")
    scan = scan_boards(tmp_path / "boards")
    summary = write_tiles(scan, tmp_path / "tiles", tile=64, per_box=3, ok_per_board=2, val_fraction=0.3, seed=1)
    assert set(summary.boards["train"]).isdisjoint(summary.boards["val"])
    assert sorted(summary.boards["train"] + summary.boards["val"]) == ["b1", "b2", "b3", "b4", "b5", "b6"]
    split = discover(tmp_path / "tiles", val_fraction=0.2, seed=0)  # the trainer reads it as a given split
    assert split.given_split and split.classes == ["Short", "Spur", "ok"]
    for part, samples in (("train", split.train), ("val", split.val)):
        assert {split.classes[s.label] for s in samples} == {"Short", "Spur", "ok"}, part  # every class, both sides
        for sample in samples:
            board = json.loads(sample.path.with_suffix(".json").read_text())["board"]
            assert board in summary.boards[part]
            pixels = load_rgb(sample.path)
            assert pixels is not None and pixels.shape == (64, 64, 3)
            painted = np.all(pixels == RED, axis=2) | np.all(pixels == BLUE, axis=2)
            box = defect_box(sample)
            if split.classes[sample.label] == "ok":
                assert box is None and not painted.any()  # touches no defect
                continue
            assert box is not None
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            colour = RED if split.classes[sample.label] == "Short" else BLUE
            assert np.all(pixels[y0:y1, x0:x1] == colour)  # the sidecar's box is the defect, in tile pixels
    origins = {tuple(json.loads(p.read_text())["origin"]) for p in (tmp_path / "tiles").rglob("b1_*.json")}
    assert len(origins) > 2  # three tiles around b1's short and two ok tiles, not one place


def test_a_class_on_one_board_cannot_be_split(tmp_path: Path) -> None:
    _photo(tmp_path / "x.png", 100, 100, [(RED, (1, 1, 9, 9))])
    _voc(tmp_path / "x.xml", "x.png", 100, 100, [("short", (1, 1, 9, 9))])
    _photo(tmp_path / "y.png", 100, 100, [])
    _voc(tmp_path / "y.xml", "y.png", 100, 100, [])
    with pytest.raises(DatasetError, match=r"\['short'\] are marked on one board only"):
        split_boards(scan_boards(tmp_path).boards, 0.5, 0)


def test_edge_train_tiles_then_refuses_to_mix_into_a_used_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _boards(tmp_path / "boards")
    command = ["tiles", "--boards", str(tmp_path / "boards"), "--out", str(tmp_path / "tiles"), "--tile", "48"]
    assert main(command) == 0
    assert "6 boards" in capsys.readouterr().out
    assert json.loads((tmp_path / "tiles" / "tiles.json").read_text())["clipped_boxes"] == 1
    assert main(command) == 2  # one line, no traceback
    assert "is not empty" in capsys.readouterr().err


def test_synthetic_panels_round_trip_through_voc_and_tile(tmp_path: Path) -> None:
    """Panels of whole boards: their boxes lie on the boards, read back from the VOC XML as rendered, and the
    same bytes per seed whatever the workers."""
    rng = np.random.default_rng(3)
    panel, boxes = render_panel(rng, grid=(3, 2), cell=64, gap=4, max_defects=3)
    assert panel.shape == (2 * 64 + 3 * 4, 3 * 64 + 4 * 4, 3)
    for box in boxes:
        column, row = int(box.x0 - 4) // 68, int(box.y0 - 4) // 68
        x, y = 4 + column * 68, 4 + row * 68  # the board the defect is on
        assert x <= box.x0 < box.x1 <= x + 64 and y <= box.y0 < box.y1 <= y + 64, box
        assert box.label in CLASSES[1:]
    summary = generate_panels(tmp_path / "panels", count=6, seed=2, grid=(3, 2), cell=64, max_defects=3)
    assert (summary.width, summary.height) == (3 * 64 + 4 * 6, 2 * 64 + 3 * 6)
    scan = scan_boards(tmp_path / "panels")
    assert len(scan.boards) == 6 and sum(len(b.boxes) for b in scan.boards) == summary.defects
    for board in scan.boards:
        index = int(board.name.split("_")[1])
        _, rendered = render_panel(np.random.default_rng([2, index]), grid=(3, 2), cell=64, max_defects=3)
        assert [(b.label, round(b.x0), round(b.y0), round(b.x1), round(b.y1)) for b in board.boxes] == [
            (b.label, round(b.x0), round(b.y0), round(b.x1), round(b.y1)) for b in rendered
        ]
    again = generate_panels(tmp_path / "again", count=2, seed=2, grid=(3, 2), cell=64, max_defects=3, workers=2)
    assert again.count == 2
    for name in ("panel_0000.png", "panel_0001.xml"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "panels" / name).read_bytes()
