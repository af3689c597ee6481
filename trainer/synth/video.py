"""Videos of synthetic boards passing under a camera, for demos and daemon tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .generate import CLASSES, render_sample

__all__ = ["render_frames", "write_video"]


def render_frames(
    count: int,
    *,
    size: int,
    seed: int,
    frame_size: int | None = None,
    classes: Sequence[str] = CLASSES,
    view: float = 0.3,
) -> tuple[list[np.ndarray], list[str]]:
    """``count`` RGB frames cycling through ``classes``, and the class of each.

    Frames are rendered at ``size`` and scaled to ``frame_size`` (a camera
    sees more pixels than the model), deterministic per seed.
    """
    frames, labels = [], []
    for i in range(count):
        cls = classes[i % len(classes)]
        image, _ = render_sample(cls, size=size, rng=np.random.default_rng([seed, 99, i]), view=view)
        if frame_size and frame_size != size:
            image = cv2.resize(image, (frame_size, frame_size), interpolation=cv2.INTER_CUBIC)
        frames.append(image)
        labels.append(cls)
    return frames, labels


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB frames as an MJPG AVI that OpenCV's FFmpeg reads back.

    Raises:
        OSError: the writer cannot be opened.
    """
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
