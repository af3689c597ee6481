"""Edge Inspector: the on-device inspection agent and the contracts it owns."""

from edge_inspector.errors import (
    BackendError,
    BundleError,
    ConfigError,
    EdgeInspectorError,
    EngineMismatchError,
    SpoolError,
    SpoolFullError,
)
from edge_inspector.heatmap import overlay_heatmap
from edge_inspector.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec, resize_and_crop

__version__ = "0.1.0"

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackendError",
    "BundleError",
    "ConfigError",
    "EdgeInspectorError",
    "EngineMismatchError",
    "InputSpec",
    "SpoolError",
    "SpoolFullError",
    "__version__",
    "overlay_heatmap",
    "resize_and_crop",
]
