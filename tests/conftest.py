"""Shared fixtures: a tiny ONNX bundle for the agent's tests (no torch), a small synthetic dataset and one
tiny trained run for the trainer's and deploy's."""

from __future__ import annotations

import os

# PyTorch's CPU threads spin while they wait for each other; beside another job on the same cores that spinning
# burns the time the awaited thread needs (bench/bench_omp_wait.py: 2x fewer training steps on 2 busy cores, at
# 26 % more on idle ones). Tests must pass on a loaded machine: waiting threads sleep. Read once, before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import urllib.request
from pathlib import Path

import pytest

from edge_inspector.backends.tensorrt import TensorRTBackend

SMALL_SIZE = 64


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests on machines without CUDA, TensorRT and pycuda."""
    if not any("gpu" in item.keywords for item in items) or TensorRTBackend.available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with TensorRT and pycuda (pip install '.[tensorrt]')")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 px, seven-class bundle built with onnx.helper (``tests/tiny_bundle.py``): treat as read-only."""
    from tiny_bundle import write_tiny_bundle

    return write_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven classes x 6 synthetic PCB images at 64 px."""
    from trainer.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth") / "pcb"
    generate_dataset(root, per_class=6, size=SMALL_SIZE, seed=7)
    return root


@pytest.fixture(scope="session")
def trained_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run at 64 px on ``synth_data``, trained once for the whole suite."""
    from trainer.config import TrainConfig
    from trainer.fit import fit

    logging.getLogger("trainer").setLevel(logging.INFO)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(
        data=synth_data,
        out=run_dir,
        image_size=SMALL_SIZE,
        weights="none",
        epochs=2,
        batch_size=8,
        cam_images=4,
        seed=1,
        box_guidance=0.5,  # both guidance terms (the demo uses cell guidance 1.0)
        cell_guidance=0.5,
        validate_from=0.6,  # epoch 1 ends at half the run: only epoch 2 is validated
        amp="off",  # bf16 autocast on CPU is not bit-reproducible: tests measure the code, not the rounding
    )
    fit(config)
    return run_dir


@pytest.fixture(scope="session")
def bundle_dir(trained_run: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trained_run`` exported and quantized (FP32, FP16, INT8 U8S8 and S8S8): treat as read-only."""
    from deploy.export import export_bundle
    from deploy.quantize import quantize_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(trained_run, out, name="tiny", version="1.0.0")
    quantize_bundle(out, synth_data, samples=42)
    return out


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No internet, for real: urllib (torch.hub downloads with it) goes through a proxy port where nothing listens.

    The opener is replaced, not the proxy variables: urllib builds its opener once
    per process, so variables set after an earlier request would be ignored.
    """
    proxy = "http://127.0.0.1:9"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    monkeypatch.setattr(urllib.request, "_opener", opener)
