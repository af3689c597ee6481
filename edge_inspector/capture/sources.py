"""Camera sources OpenCV opens: a device, a file, an RTSP/HTTP stream, a GStreamer pipeline, an image folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_inspector.config import CameraConfig
from edge_inspector.errors import ConfigError

__all__ = ["FolderSource", "check_source", "is_file", "is_pipeline", "open_source", "opencv_has_gstreamer"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class FolderSource:
    """Images of a folder in name order, read like a video."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.position = 0

    def isOpened(self) -> bool:  # noqa: N802 - mirrors cv2.VideoCapture
        return bool(self.paths)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.position >= len(self.paths):
            return False, None
        path = self.paths[self.position]
        self.position += 1
        return True, cv2.imread(str(path), cv2.IMREAD_COLOR)

    def release(self) -> None:
        self.position = len(self.paths)


def is_pipeline(source: str) -> bool:
    """A GStreamer pipeline ending in an appsink."""
    return "!" in source and "appsink" in source


def is_file(source: str | int) -> bool:
    """A video file or an image folder: finite, replayed whole."""
    return isinstance(source, str) and "://" not in source and not is_pipeline(source)


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (JetPack's is; the PyPI wheels are not)."""
    line = next((ln for ln in cv2.getBuildInformation().splitlines() if "GStreamer:" in ln), "")
    return "YES" in line


def check_source(config: CameraConfig) -> None:
    """Refuse a source this OpenCV cannot open, before any thread starts.

    Raises:
        ConfigError: a GStreamer pipeline on an OpenCV built without
            GStreamer (the PyPI wheels), or a file or folder that is missing.
    """
    source = config.source
    if isinstance(source, str) and is_pipeline(source):
        if not opencv_has_gstreamer():
            raise ConfigError(
                "camera.source is a GStreamer pipeline but this OpenCV has no GStreamer support (the PyPI wheels "
                "bundle FFmpeg only); on a Jetson use the OpenCV that JetPack ships (python3-opencv) in a venv "
                "created with --system-site-packages"
            )
    elif is_file(source) and not Path(str(source)).exists():
        raise ConfigError(f"camera.source: {source} does not exist")


def open_source(source: str | int) -> cv2.VideoCapture | FolderSource:
    """An opened capture for any supported source (check ``isOpened()``)."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return cv2.VideoCapture(int(source))
    if is_pipeline(source):
        return cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    if Path(source).is_dir():
        return FolderSource(Path(source))
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG) if "://" in source else cv2.VideoCapture(source)
