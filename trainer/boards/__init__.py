"""Whole board photos with their defects marked as boxes (Pascal VOC XML or COCO JSON), cut into training tiles."""

from trainer.boards.annotations import Board, BoardScan, Box, load_class_map, scan_boards
from trainer.boards.tiles import TileSummary, split_boards, write_tiles

__all__ = ["Board", "BoardScan", "Box", "TileSummary", "load_class_map", "scan_boards", "split_boards", "write_tiles"]
