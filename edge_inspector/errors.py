"""Errors a user can act on, raised across the whole product.

Hierarchy::

    EdgeInspectorError            one clear line for the user, non-zero exit
    +-- ConfigError               a config file or flag is wrong
    +-- DatasetError              an image folder cannot be used for training
    +-- WeightsError              initial weights cannot be found or loaded
    +-- CheckpointError           a training run or checkpoint is missing or broken
    +-- BundleError               a model bundle is missing, incomplete or tampered with
    +-- BackendError              an inference backend is missing or cannot run a bundle
        +-- EngineMismatchError   a TensorRT engine was built for another GPU or TensorRT

Anything else escaping a CLI is a bug and is shown with its traceback.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BundleError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "EdgeInspectorError",
    "EngineMismatchError",
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


class BundleError(EdgeInspectorError):
    """A bundle directory is missing a file, has a bad manifest or a wrong hash."""


class BackendError(EdgeInspectorError):
    """An inference backend is not installed or cannot run the bundle."""


class EngineMismatchError(BackendError):
    """A TensorRT engine does not match this GPU or TensorRT version: rebuild it."""
