"""Frames from the cameras to inference: the capture threads, their sources, and the mailbox between.

:class:`Camera` reads one source (:mod:`.sources`: device, file, stream,
GStreamer pipeline, image folder) on its own thread; :class:`FrameMailbox`
hands frames to inference, one slot per camera; :class:`Triggers` routes
``cmd/trigger`` to the triggered cameras.
"""

from edge_inspector.capture.camera import Camera
from edge_inspector.capture.mailbox import Frame, FrameMailbox
from edge_inspector.capture.sources import check_source
from edge_inspector.capture.triggers import TriggerRequest, Triggers

__all__ = ["Camera", "Frame", "FrameMailbox", "TriggerRequest", "Triggers", "check_source"]
