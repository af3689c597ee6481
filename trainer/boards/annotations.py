"""Board photos with their defects marked as boxes: Pascal VOC XML (a file per image) or COCO JSON.

Box coordinates become pixels ``(x0, y0, x1, y1)`` with ``x1``/``y1``
exclusive: VOC's 1-based inclusive corners lose one at the top left, COCO's
``[x, y, w, h]`` gains its size. A box that leaves its image is clipped (and
counted); one with nothing left inside is dropped (and counted). A file that
does not parse is skipped, and so is a photo it names that is not there
(the file's other photos are used), each with a warning that names it; the
scan goes on.

Class names come from the annotations, or through a class map (YAML or JSON,
``{name in the annotations: class of the model}``) that must name every class
the annotations use: an unknown one is refused by name.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trainer.data import IMAGE_EXTENSIONS, load_rgb
from trainer.errors import DatasetError

__all__ = ["Board", "BoardScan", "Box", "load_class_map", "scan_boards", "write_voc"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """One marked defect, in the pixels of its board photo."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    def intersects(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Whether the box overlaps the rectangle ``[x0, x1) x [y0, y1)``."""
        return self.x0 < x1 and x0 < self.x1 and self.y0 < y1 and y0 < self.y1


@dataclass(frozen=True)
class Board:
    """A board photo and the defects marked on it (none: a defect-free board)."""

    image: Path
    width: int
    height: int
    boxes: tuple[Box, ...]

    @property
    def name(self) -> str:
        """The photo's file name without its extension: what the split and the tiles are named by."""
        return self.image.stem


@dataclass
class BoardScan:
    """What :func:`scan_boards` found: the boards, their classes, and what it had to fix or leave out."""

    boards: list[Board]
    classes: list[str]
    clipped: int = 0
    dropped: int = 0
    skipped: list[str] = field(default_factory=list)

    def boxes_per_class(self) -> dict[str, int]:
        """Marked defects by class, over every board."""
        return dict(Counter(box.label for board in self.boards for box in board.boxes))


def load_class_map(path: Path) -> dict[str, str]:
    """A class map file: ``{name in the annotations: class of the model}``, YAML or JSON.

    Raises:
        DatasetError: the file cannot be read or is not such a mapping.
    """
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"--class-map {path}: cannot read it ({exc})") from exc
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
        raise DatasetError(f"--class-map {path}: expected a mapping of class names to class names")
    return dict(loaded)


def scan_boards(root: Path, class_map: Mapping[str, str] | None = None) -> BoardScan:
    """Every annotated board under ``root``: the ``*.xml`` (VOC) and ``*.json`` (COCO) files, searched recursively.

    An image is found beside its annotation, at the path the annotation
    names, or anywhere under ``root`` by its file name.

    Raises:
        DatasetError: ``root`` is missing, holds no usable annotation, or uses a class the class map lacks.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: folder of board photos not found")
    images = _image_index(root)
    scan = BoardScan(boards=[], classes=[])
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in {".xml", ".json"} and p.is_file()):
        try:
            parsed = list(_read_voc(path, images) if path.suffix.lower() == ".xml" else _read_coco(path, images))
        except (ET.ParseError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipping %s: not a VOC or COCO annotation (%s)", path, exc)
            scan.skipped.append(str(path))
            continue
        for board in parsed:
            if isinstance(board, Board):
                scan.boards.append(_clipped(board, scan))
            else:  # one photo of the file is missing: the file's other photos are used
                log.warning("skipping %s: its photo %s is not under the folder", path, board)
                scan.skipped.append(f"{path}: {board}")
    if not scan.boards:
        raise DatasetError(f"{root}: no board photo with a readable VOC (*.xml) or COCO (*.json) annotation")
    if class_map is not None:
        unknown = sorted({b.label for board in scan.boards for b in board.boxes} - set(class_map))
        if unknown:
            raise DatasetError(f"{root}: class(es) {unknown} are not in the class map ({sorted(class_map)})")
        scan.boards = [_mapped(board, class_map) for board in scan.boards]
    scan.classes = sorted({b.label for board in scan.boards for b in board.boxes})
    return scan


def write_voc(path: Path, image: str, width: int, height: int, boxes: Sequence[Box]) -> None:
    """A Pascal VOC annotation of the photo ``image`` (a name beside ``path``) and its boxes, in VOC's
    1-based inclusive corners."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = image
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.label
        corners = ET.SubElement(obj, "bndbox")
        values = (box.x0 + 1, box.y0 + 1, box.x1, box.y1)
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), values, strict=True):
            ET.SubElement(corners, tag).text = str(int(round(value)))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="unicode")


def _image_index(root: Path) -> dict[str, Path]:
    """Images under ``root`` by file name (the first in path order when a name repeats)."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            index.setdefault(path.name, path)
    return index


def _find_image(annotation: Path, named: str | None, images: Mapping[str, Path]) -> Path | None:
    """The photo an annotation is about: the file it names (beside it or by name), else one with its stem;
    None when there is none."""
    if named:
        beside = annotation.parent / named
        if beside.is_file():
            return beside
        if Path(named).name in images:
            return images[Path(named).name]
    for extension in sorted(IMAGE_EXTENSIONS):
        candidate = annotation.with_suffix(extension)
        if candidate.is_file():
            return candidate
        if candidate.name in images:
            return images[candidate.name]
    return None


def _read_voc(path: Path, images: Mapping[str, Path]) -> Iterator[Board | str]:
    """The board of a VOC file, or the name of its photo when that is missing."""
    root = ET.parse(path).getroot()
    if root.tag != "annotation":
        raise ValueError(f"the root element is <{root.tag}>, not <annotation>")
    named = root.findtext("filename")
    image = _find_image(path, named, images)
    if image is None:
        yield named or f"{path.stem}.*"
        return
    width, height = int(root.findtext("size/width") or 0), int(root.findtext("size/height") or 0)
    if width <= 0 or height <= 0:  # some tools leave <size> out or zero: the photo says
        width, height = _image_size(image)
    boxes = []
    for obj in root.iter("object"):
        corners = obj.find("bndbox")
        if corners is None:
            raise ValueError("an <object> without <bndbox>")
        xmin, ymin, xmax, ymax = (float(corners.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(Box(obj.findtext("name", "").strip(), xmin - 1, ymin - 1, xmax, ymax))
    yield Board(image, width, height, tuple(boxes))


def _image_size(path: Path) -> tuple[int, int]:
    image = load_rgb(path)
    if image is None:
        raise ValueError(f"its image {path} cannot be decoded")
    return image.shape[1], image.shape[0]


def _read_coco(path: Path, images: Mapping[str, Path]) -> Iterator[Board | str]:
    """The boards of a COCO file, and the names of the photos that are missing."""
    data = json.loads(path.read_text())
    names = {category["id"]: str(category["name"]) for category in data["categories"]}
    boxes: dict[int, list[Box]] = {}
    for item in data["annotations"]:
        x, y, w, h = (float(v) for v in item["bbox"])
        boxes.setdefault(item["image_id"], []).append(Box(names[item["category_id"]], x, y, x + w, y + h))
    for entry in data["images"]:
        image = _find_image(path, str(entry["file_name"]), images)
        if image is None:
            yield str(entry["file_name"])
            continue
        yield Board(image, int(entry["width"]), int(entry["height"]), tuple(boxes.get(entry["id"], [])))


def _clipped(board: Board, scan: BoardScan) -> Board:
    kept = []
    for box in board.boxes:
        x0, y0 = max(box.x0, 0.0), max(box.y0, 0.0)
        x1, y1 = min(box.x1, float(board.width)), min(box.y1, float(board.height))
        if x1 <= x0 or y1 <= y0:
            scan.dropped += 1
            log.warning("%s: dropping a %s box with nothing inside the image", board.image, box.label)
            continue
        if (x0, y0, x1, y1) != (box.x0, box.y0, box.x1, box.y1):
            scan.clipped += 1
        kept.append(Box(box.label, x0, y0, x1, y1))
    return Board(board.image, board.width, board.height, tuple(kept))


def _mapped(board: Board, class_map: Mapping[str, str]) -> Board:
    boxes = tuple(Box(class_map[b.label], b.x0, b.y0, b.x1, b.y1) for b in board.boxes)
    return Board(board.image, board.width, board.height, boxes)
