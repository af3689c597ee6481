"""ResNet50 with CBAM in the late stages and a dropout + linear head.

The head applies its linear layer to every cell of the last feature map,
giving the class activation maps ``cam[c] = sum_k W[c, k] * F[k]``, then
pools each map into a logit (plus the bias): the maps are exact, since the
logits are computed from them. ``mean`` pooling is ResNet50's global average
pooling; ``mean-max`` averages a map's mean and its peak, so a defect that
covers a few cells is not diluted by the rest of the image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential
from torchvision.models.resnet import Bottleneck

from trainer.cbam import CBAM
from trainer.config import ATTENTION_STAGES, FREEZABLE_STAGES
from trainer.errors import WeightsError

__all__ = [
    "CAM_STRIDES",
    "POOLINGS",
    "AttentiveBottleneck",
    "DefectNet",
    "build_model",
    "imagenet_state_dict",
    "imagenet_weights_path",
]

log = logging.getLogger(__name__)

_IMAGENET = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
CAM_STRIDES = (32, 16)
POOLINGS = ("mean", "mean-max")


class AttentiveBottleneck(nn.Module):
    """A torchvision ``Bottleneck`` with CBAM on its residual branch, before the sum."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        self.block = block
        self.cbam = CBAM(block.bn3.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        identity = x if b.downsample is None else b.downsample(x)
        out = b.relu(b.bn1(b.conv1(x)))
        out = b.relu(b.bn2(b.conv2(out)))
        out = self.cbam(b.bn3(b.conv3(out)))
        return b.relu(out + identity)


class DefectNet(nn.Module):
    """ResNet50 trunk (torchvision names) + dropout, linear head per map cell, pooling."""

    def __init__(self, trunk: torchvision.models.ResNet, num_classes: int, dropout: float, pooling: str) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        # whole channels: under mean pooling the same as dropout on the pooled vector
        self.dropout = nn.Dropout2d(dropout)
        self.fc = nn.Linear(trunk.fc.in_features, num_classes)
        self.pooling = pooling
        self.frozen_stages: tuple[str, ...] = ()
        self.grad_checkpointing = False

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """The modules that make up a named stage."""
        if stage == "stem":
            return [self.conv1, self.bn1]
        if stage == "head":
            return [self.fc]
        if stage in ATTENTION_STAGES:
            return [getattr(self, stage)]
        raise ValueError(f"unknown stage '{stage}'; stages are {', '.join(FREEZABLE_STAGES)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``[N, 2048, h, w]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint_sequential(nn.Sequential(*stages), len(stages), x, use_reentrant=False)
        for stage in stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor, with_cam: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N, C]``; with ``with_cam``, also the class activation maps ``[N, C, h, w]``."""
        # the head as a 1x1 convolution: every runtime and quantizer handles it well
        cam = F.conv2d(self.dropout(self.features(x)), self.fc.weight[:, :, None, None])
        logits = cam.mean(dim=(2, 3))
        if self.pooling == "mean-max":
            logits = 0.5 * (logits + cam.amax(dim=(2, 3)))
        logits = logits + self.fc.bias
        return (logits, cam) if with_cam else logits

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N, C]`` and the maps they are pooled from (what export traces)."""
        logits, cam = self.forward(x, with_cam=True)
        return logits, cam

    def train(self, mode: bool = True) -> DefectNet:
        """Train mode, except frozen stages, whose BatchNorm statistics stay fixed."""
        super().train(mode)
        if mode:
            for stage in self.frozen_stages:
                for module in self.stage_modules(stage):
                    module.eval()
        return self


def imagenet_weights_path() -> Path:
    """Where torch hub keeps the ImageNet ResNet50 weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_IMAGENET.url).name


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet50 weights, loaded as torchvision loads them.

    From the torch hub cache when there, else downloaded into it (hash-checked).

    Raises:
        WeightsError: neither, in one line that says where to put the file.
    """
    path = imagenet_weights_path()
    try:
        return _IMAGENET.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as exc:  # URLError when offline, RuntimeError for a bad hash or file, among others
        reason = str(getattr(exc, "reason", None) or exc).splitlines()[0]
        where = "is unreadable" if path.is_file() else "could not be downloaded"
        raise WeightsError(
            f"ImageNet weights: the torch hub cache file {path} {where} ({reason}). On a machine with internet, "
            f"download {_IMAGENET.url} and copy it to {path} (or set TORCH_HOME), pass --weights PATH to a copy, "
            "or train from scratch with --weights none"
        ) from exc


def _load_trunk(weights: str, cam_stride: int) -> torchvision.models.ResNet:
    # stride 16: layer4 dilates its convolutions instead of striding; same weights, a map twice as fine
    dilation = [False, False, cam_stride == 16]
    if weights.lower() == "none":
        # each residual block starts as the identity: trains faster from scratch (Goyal et al., 2017)
        return torchvision.models.resnet50(weights=None, zero_init_residual=True, replace_stride_with_dilation=dilation)
    trunk = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilation)
    if weights.lower() == "imagenet":
        path, state = imagenet_weights_path(), imagenet_state_dict()
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise WeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint of ours: reuse its trunk
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.") and ".cbam." not in k}
    backbone = {k.replace(".block.", "."): v for k, v in backbone.items()}
    try:
        missing, unexpected = trunk.load_state_dict(backbone, strict=False)
    except RuntimeError as exc:  # same names, other shapes
        raise WeightsError(f"{path}: does not fit a ResNet50 ({str(exc).splitlines()[1].strip()})") from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(
            f"{path}: does not fit a ResNet50 ({len(missing)} missing, {len(unexpected)} unexpected tensors, "
            f"e.g. {(missing + unexpected)[:3]})"
        )
    log.info("loaded backbone weights from %s", path)
    return trunk


def build_model(
    *,
    num_classes: int,
    weights: str = "none",
    attention: Sequence[str] = ("layer3", "layer4"),
    dropout: float = 0.2,
    cam_stride: int = 16,
    pooling: str = "mean-max",
) -> DefectNet:
    """Build the defect classifier.

    Args:
        num_classes: number of output classes.
        weights: ``imagenet`` (torch hub cache, downloaded there when missing), ``none``, or
            a path to a ResNet50 state dict or one of our checkpoints.
        attention: stages whose bottlenecks get a CBAM block.
        dropout: dropout of whole feature channels before the linear head.
        cam_stride: input pixels per activation-map cell: 16 (layer4 dilated: a
            map twice as fine per side, at a cost in speed) or 32 (ResNet50's).
        pooling: how each class map becomes a logit: ``mean`` (ResNet50's) or
            ``mean-max`` (the mean and the peak averaged).

    Raises:
        WeightsError: the weights cannot be found or do not fit.
        ValueError: an unknown attention stage, CAM stride or pooling.
    """
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    if cam_stride not in CAM_STRIDES:
        raise ValueError(f"cam_stride must be one of {CAM_STRIDES}, got {cam_stride}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    trunk = _load_trunk(weights, cam_stride)  # load first, then change the architecture
    for stage in attention:
        if stage not in ATTENTION_STAGES:
            raise ValueError(f"attention stage '{stage}' must be one of {', '.join(ATTENTION_STAGES)}")
        layer: nn.Sequential = getattr(trunk, stage)
        setattr(trunk, stage, nn.Sequential(*(AttentiveBottleneck(block) for block in layer)))
    return DefectNet(trunk, num_classes, dropout, pooling)
