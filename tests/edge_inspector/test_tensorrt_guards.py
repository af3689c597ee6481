"""The TensorRT backend's guards that need neither a GPU nor TensorRT: version floor, no context."""

from pathlib import Path

import pytest

from edge_inspector.backends.tensorrt_engine import MIN_TENSORRT, checked_context, require_tensorrt_version
from edge_inspector.errors import BackendError


@pytest.mark.parametrize("version", ["8.6.2", "8.6.2.3", "9.3.0.post12.dev1", "garbage"])
def test_tensorrt_before_10_is_refused_naming_jetpack(version: str) -> None:
    with pytest.raises(BackendError, match=rf"TensorRT {version} found; this needs TensorRT >= 10 \(JetPack >= 6\.1\)"):
        require_tensorrt_version(version)


@pytest.mark.parametrize("version", ["10.0.1", "10.3.0", "10.13.3.9", "11.0.0"])
def test_tensorrt_10_and_later_is_accepted(version: str) -> None:
    assert MIN_TENSORRT == 10
    require_tensorrt_version(version)


def test_missing_execution_context_names_gpu_memory() -> None:
    with pytest.raises(BackendError, match=r"model\.int8\.x\.engine: .*execution context.*GPU memory"):
        checked_context(None, Path("engines/model.int8.x.engine"))
    context = object()
    assert checked_context(context, Path("e.engine")) is context
