"""Frames kept for engineers to label, in the calibration layout: the loop back to the trainer."""

from __future__ import annotations

import logging
import re
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.config import SamplesConfig

__all__ = ["SampleKeeper"]

log = logging.getLogger(__name__)

_OURS = re.compile(r"\d{8}T\d{6}_\d{9}\.png")  # <capture time>_<seq>.png, as save() names them


class SampleKeeper:
    """Saves defect (and low-confidence) frames to ``<folder>/<label>/``, at most ``max_files``."""

    def __init__(self, config: SamplesConfig) -> None:
        self.config = config
        self._files: deque[Path] = deque()
        if config.folder is not None:
            config.folder.mkdir(parents=True, exist_ok=True)
            # only what the agent wrote counts (and is ever deleted), never an engineer's own files
            ours = (p for p in config.folder.glob("*/*.png") if _OURS.fullmatch(p.name))
            self._files.extend(sorted(ours, key=lambda p: p.stat().st_mtime))

    def wanted(self, is_defect: bool, confidence: float) -> bool:
        """Whether a frame with this verdict is kept."""
        if self.config.folder is None:
            return False
        low = self.config.low_confidence is not None and confidence < self.config.low_confidence
        return (is_defect and self.config.defects) or low

    def save(self, image: np.ndarray, label: str, seq: int, stamp: str) -> Path | None:
        """Write an RGB frame as PNG; the oldest kept frame goes when the folder is full."""
        assert self.config.folder is not None
        folder = self.config.folder / label
        folder.mkdir(exist_ok=True)
        path = folder / f"{stamp}_{seq:09d}.png"
        try:
            if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise OSError("encoder refused the frame")
        except (OSError, cv2.error) as exc:  # a full disk must not stop inspection
            log.warning("cannot keep sample %s: %s", path, exc)
            return None
        self._files.append(path)
        while len(self._files) > self.config.max_files:
            self._files.popleft().unlink(missing_ok=True)
        return path
