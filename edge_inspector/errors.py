"""Errors a user can act on, raised across the whole product.

Hierarchy::

    EdgeInspectorError            one clear line for the user, non-zero exit
    +-- ConfigError               a config file or flag is wrong
    +-- DatasetError              an image folder cannot be used for training
    +-- WeightsError              initial weights cannot be found or loaded
    +-- CheckpointError           a training run or checkpoint is missing or broken

Anything else escaping a CLI is a bug and is shown with its traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "EdgeInspectorError",
    "WeightsError",
]


class EdgeInspectorError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class ConfigError(EdgeInspectorError):
    """A configuration file, field or command-line flag is invalid."""


class DatasetError(EdgeInspectorError):
    """An image folder cannot be used (missing, empty class, one class...)."""


class WeightsError(EdgeInspectorError):
    """Initial model weights cannot be found or do not fit the model."""


class CheckpointError(EdgeInspectorError):
    """A training run directory or checkpoint is missing or unreadable."""
