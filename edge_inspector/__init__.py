"""Edge Inspector: the on-device inspection agent and the contracts it owns."""

from edge_inspector.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    EdgeInspectorError,
    WeightsError,
)
from edge_inspector.heatmap import overlay_heatmap
from edge_inspector.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec, resize_and_crop

__version__ = "0.1.0"

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "EdgeInspectorError",
    "InputSpec",
    "WeightsError",
    "__version__",
    "overlay_heatmap",
    "resize_and_crop",
]
