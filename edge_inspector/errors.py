"""Errors a user can act on: the agent's and the model bundle's (the trainer's are in ``trainer.errors``).

Hierarchy::

    EdgeInspectorError            one clear line for the user, non-zero exit
    +-- ConfigError               a config file or flag is wrong
    +-- BundleError               a model bundle is missing, incomplete or tampered with
    +-- BackendError              an inference backend is missing or cannot run a bundle
    |   +-- EngineMismatchError   a TensorRT engine was built for another GPU or TensorRT
    +-- SpoolError                the spool cannot be opened or written
        +-- SpoolFullError        the disk is full

``trainer.errors`` adds DatasetError, WeightsError and CheckpointError.
Anything else escaping a CLI is a bug and is shown with its traceback.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:  # annotations only: the module's namespace stays its errors
    from collections.abc import Callable, Sequence

    from pydantic import ValidationError

__all__ = [
    "BackendError",
    "BundleError",
    "ConfigError",
    "EdgeInspectorError",
    "EngineMismatchError",
    "SpoolError",
    "SpoolFullError",
    "validation_problems",
]


class EdgeInspectorError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class ConfigError(EdgeInspectorError):
    """A configuration file, field or command-line flag is invalid."""


class BundleError(EdgeInspectorError):
    """A bundle directory is missing a file, has a bad manifest or a wrong hash."""


class BackendError(EdgeInspectorError):
    """An inference backend is not installed or cannot run the bundle."""


class EngineMismatchError(BackendError):
    """A TensorRT engine does not match this GPU or TensorRT version: rebuild it."""


class SpoolError(EdgeInspectorError):
    """The spool cannot be opened or written (unwritable folder, full disk, corrupt file)."""


class SpoolFullError(SpoolError):
    """The disk (or the database) is full: nothing more can be written until room comes back."""


def _dotted(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def validation_problems(
    exc: ValidationError, *, whole: str = "config", field: Callable[[Sequence[int | str]], str] = _dotted
) -> str:
    """Every problem pydantic found, as ``field.path: message; ...`` on one line (``whole`` for the top level)."""
    return "; ".join(f"{field(err['loc']) or whole}: {err['msg']}" for err in exc.errors())
