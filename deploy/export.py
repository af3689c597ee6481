"""Export a training run to a bundle: ONNX graph, parity check, manifest.

The exported graph takes what the camera path produces, ``image`` uint8
``[N, H, W, 3]`` RGB, and does the layout change and normalisation itself;
it returns ``logits [N, C]`` and ``cam [N, C, h, w]``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from edge_inspector.bundle import (
    CAM,
    IMAGE,
    LOGITS,
    Bundle,
    BundleManifest,
    Precision,
    TrainingSummary,
    Variant,
    load_bundle,
    write_manifest,
)
from edge_inspector.errors import BundleError
from edge_inspector.preprocess import InputSpec, resize_and_crop
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.data import Sample, load_rgb
from trainer.errors import CheckpointError
from trainer.evaluation import split_samples
from trainer.model import DefectNet

__all__ = ["OPSET", "EdgeModel", "ParityReport", "export_bundle", "load_images", "onnx_session"]

log = logging.getLogger(__name__)

OPSET = 17
FP32_FILE = "model.onnx"
PARITY_TOLERANCE = 1e-2  # largest |logit difference| accepted between PyTorch and ONNX Runtime


class EdgeModel(nn.Module):
    """The network as the box runs it: uint8 NHWC RGB in, logits and CAMs out."""

    def __init__(self, net: DefectNet, spec: InputSpec) -> None:
        super().__init__()
        self.net = net
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", mean / std)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # cast first: TensorRT takes uint8 only as a network input that feeds a Cast
        x = image.float().permute(0, 3, 1, 2) * self.scale - self.shift
        return self.net.forward_with_cam(x)


@dataclass(frozen=True)
class ParityReport:
    """How the exported graph compares with PyTorch on real images."""

    images: int
    top1_agreement: float
    max_logit_diff: float
    max_cam_diff: float


def load_images(samples: list[Sample], spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Decode, resize and crop samples exactly as the box does: uint8 batch and labels."""
    images, labels = [], []
    for sample in samples:
        image = load_rgb(sample.path)
        if image is None:
            log.warning("skipping unreadable image %s", sample.path)
            continue
        images.append(resize_and_crop(image, spec))
        labels.append(sample.label)
    if not images:
        raise BundleError("no readable images to check the model with")
    return np.stack(images), np.asarray(labels)


def onnx_session(path: Path, threads: int | None = None, *, optimize: bool = True) -> ort.InferenceSession:
    """A CPU ONNX Runtime session, with graph optimisations on unless ``optimize`` is False.

    ``optimize=False`` runs the graph exactly as written: ONNX Runtime's CPU
    optimiser (1.32) computes Q/DQ graphs with fp16 scales wrongly, though the
    graph itself is right (the TensorRT flavour's, see ``deploy.quantize``).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_onnx(model: EdgeModel, spec: InputSpec, path: Path) -> None:
    dummy = torch.zeros(2, spec.size, spec.size, 3, dtype=torch.uint8)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=[IMAGE],
        output_names=[LOGITS, CAM],
        dynamic_axes={IMAGE: {0: "N"}, LOGITS: {0: "N"}, CAM: {0: "N"}},
        opset_version=OPSET,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@torch.no_grad()
def check_parity(model: EdgeModel, path: Path, images: np.ndarray, batch: int = 16) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same uint8 images and compare."""
    session = onnx_session(path)
    agree, logit_diff, cam_diff = 0, 0.0, 0.0
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        torch_logits, torch_cam = (t.numpy() for t in model(torch.from_numpy(chunk)))
        onnx_logits, onnx_cam = session.run([LOGITS, CAM], {IMAGE: chunk})
        agree += int((torch_logits.argmax(1) == onnx_logits.argmax(1)).sum())
        logit_diff = max(logit_diff, float(np.abs(torch_logits - onnx_logits).max()))
        cam_diff = max(cam_diff, float(np.abs(torch_cam - onnx_cam).max()))
    return ParityReport(len(images), agree / len(images), logit_diff, cam_diff)


def export_bundle(
    run_dir: Path, out: Path, *, name: str | None = None, version: str | None = None, parity_images: int = 64
) -> tuple[Bundle, ParityReport]:
    """Export ``run_dir/best.pt`` to an FP32 bundle in ``out``.

    Args:
        run_dir: a training run directory.
        out: the bundle directory (created; an existing bundle is replaced).
        name: model name (default: the run directory's name).
        version: model version (default: UTC time of export).
        parity_images: validation images used to compare PyTorch with ONNX.

    Returns:
        The written, verified bundle and the parity figures.

    Raises:
        CheckpointError: the run has no usable checkpoint.
        BundleError: the exported graph disagrees with PyTorch.
    """
    state = load_checkpoint(run_dir / "best.pt")
    net, spec = model_from_checkpoint(state)
    model = EdgeModel(net, spec).eval()
    if out.exists():
        if not (out / "manifest.json").is_file() and any(out.iterdir()):
            raise BundleError(f"{out}: exists and is not a bundle; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _export_onnx(model, spec, out / FP32_FILE)

    try:
        samples = split_samples(run_dir)[:parity_images]
    except CheckpointError:
        samples = []
    if samples:
        images, _ = load_images(samples, spec)
    else:  # the run's images are gone: random pixels still test the arithmetic
        log.warning("validation images of %s not found; checking parity on random images", run_dir)
        images = np.random.default_rng(0).integers(0, 256, (8, spec.size, spec.size, 3), dtype=np.uint8)
    parity = check_parity(model, out / FP32_FILE, images)
    log.info(
        "ONNX parity on %d images: top-1 agreement %.1f%%, largest logit difference %.2e, largest cam difference %.2e",
        parity.images,
        100 * parity.top1_agreement,
        parity.max_logit_diff,
        parity.max_cam_diff,
    )
    if parity.top1_agreement < 1.0 or parity.max_logit_diff > PARITY_TOLERANCE:
        raise BundleError(
            f"{out / FP32_FILE}: ONNX output differs from PyTorch (top-1 agreement {parity.top1_agreement:.3f}, "
            f"logit difference {parity.max_logit_diff:.2e} > {PARITY_TOLERANCE})"
        )

    dataset = state.get("dataset", {})
    metrics = state.get("metrics", {})
    manifest = BundleManifest(
        model_name=name or run_dir.resolve().name,
        model_version=version or datetime.now(timezone.utc).strftime("%Y%m%d.%H%M%S"),
        classes=state["classes"],
        ok_class=state["ok_class"],
        input=spec,
        threshold=state["threshold"],
        training=TrainingSummary(
            run=str(run_dir.resolve()),
            epoch=state["epoch"],
            dataset_fingerprint=dataset.get("fingerprint", ""),
            train_counts=dataset.get("train_counts", []),
            val_counts=dataset.get("val_counts", []),
            validation={k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "defect") if k in metrics},
        ),
        variants={
            "fp32": Variant(
                file=FP32_FILE,
                precision=Precision.FP32,
                accuracy=metrics.get("accuracy"),
                top1_agreement=parity.top1_agreement,
                max_logit_diff=parity.max_logit_diff,
            )
        },
    )
    write_manifest(out, manifest)
    return load_bundle(out), parity
