"""Errors of training a model, each a one-line message the engineer can act on.

They derive from :class:`edge_inspector.errors.EdgeInspectorError`, so every
command reports them the same way::

    EdgeInspectorError
    +-- DatasetError      an image folder cannot be used for training
    +-- WeightsError      initial weights cannot be found or loaded
    +-- CheckpointError   a training run or checkpoint is missing or broken
"""

from __future__ import annotations

from edge_inspector import errors

__all__ = ["CheckpointError", "DatasetError", "WeightsError"]


class DatasetError(errors.EdgeInspectorError):
    """An image folder cannot be used (missing, empty class, one class...)."""


class WeightsError(errors.EdgeInspectorError):
    """Initial model weights cannot be found or do not fit the model."""


class CheckpointError(errors.EdgeInspectorError):
    """A training run directory or checkpoint is missing or unreadable."""
