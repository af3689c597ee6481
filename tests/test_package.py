"""Public names are re-exported and ``__all__`` lists exactly them."""

import importlib

import pytest


@pytest.mark.parametrize("module_name", ["edge_inspector", "edge_inspector.errors", "trainer.errors", "trainer.synth"])
def test_all_is_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    public = {name for name in vars(module) if not name.startswith("_") and not _is_module(getattr(module, name))}
    public -= {"annotations"}
    assert set(module.__all__) - {"__version__"} == public


def _is_module(value: object) -> bool:
    return type(value).__name__ == "module"


def test_edge_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    modules = ", ".join(
        [
            "edge_inspector.cli",
            "edge_inspector.daemon",
            "edge_inspector.backends.onnxruntime",
            "edge_inspector.backends.tensorrt",
        ]
    )
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
