"""DistributedDataParallel: the same entry point under torchrun, 2 CPU processes on gloo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import load_checkpoint


def test_torchrun_two_gloo_processes(synth_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "trainer.cli",
        "fit",
        "--data",
        str(synth_data),
        "--out",
        str(run),
        "--weights",
        "none",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "6",
        "--device",
        "cpu",
        "--amp",
        "off",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(run / "best.pt")
    assert state["epoch"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["count"] == 7
    history = state["history"][0]
    # 35 training images, padded to 2 x 18 by DistributedSampler: the epoch figures add up both ranks
    assert history["train_images"] == 36
    # validation ran sharded over both ranks and was gathered; the report scores best.pt in one process
    assert history["val_accuracy"] == pytest.approx(metrics["accuracy"])
    assert history["val_balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
