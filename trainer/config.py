"""The typed training configuration: built once from YAML and flags, passed down."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_inspector.errors import ConfigError, validation_problems

__all__ = ["ATTENTION_STAGES", "FREEZABLE_STAGES", "AmpMode", "Augment", "LossKind", "TrainConfig", "load_train_config"]

DEFAULT_FREEZE: tuple[str, ...] = ("stem", "layer1", "layer2")
FREEZABLE_STAGES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4", "head")
ATTENTION_STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")


class LossKind(str, Enum):
    """Training loss."""

    FOCAL = "focal"
    CROSS_ENTROPY = "ce"


class Augment(str, Enum):
    """Training augmentation: ours for small defects, or torchvision's ImageNet reference."""

    DEFECT = "defect"
    IMAGENET = "imagenet"


class AmpMode(str, Enum):
    """Mixed precision: ``auto`` uses fp16 on CUDA and bf16 on CPUs that have it."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class TrainConfig(BaseModel):
    """Everything one training run needs; saved beside its checkpoints."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: Path = Field(description="image folder: <class>/*.png, optionally under train/ and val/")
    out: Path = Field(description="run directory for checkpoints and the report")
    image_size: int = Field(224, ge=32, le=1024, description="side of the square model input")
    weights: str = Field(
        "imagenet", description="imagenet (torchvision's, via the torch hub cache) | none | path to a state dict"
    )
    freeze: list[str] | None = Field(
        None, description="stages to freeze; default stem, layer1, layer2 over pretrained weights, none otherwise"
    )
    attention: list[str] = Field(["layer3", "layer4"], description="stages that get CBAM blocks")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout of whole feature channels before the linear head")
    cam_stride: Literal[32, 16] = Field(
        16, description="input pixels per activation-map cell: 16 (layer4 dilated: finer heatmaps), or ResNet50's 32"
    )
    pooling: Literal["mean", "mean-max"] = Field(
        "mean-max",
        description="how each class activation map becomes a logit: mean-max (the map's mean and peak averaged: "
        "a small defect is not diluted by the image around it) or mean (ResNet50's global average pooling)",
    )
    ok_class: str = Field("ok", description="the class that means 'no defect'")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="defect decision threshold on P(defect)")

    epochs: int = Field(20, ge=1, description="most epochs to train")
    time_budget_min: float | None = Field(
        None,
        gt=0.0,
        description="minutes the run may take from its first step, validation included: the schedule runs on the "
        "clock and training ends when they are spent, mid-epoch if need be (default: no limit)",
    )
    batch_size: int = Field(32, ge=1, description="images per step (per process under torchrun)")
    lr: float = Field(1e-3, gt=0.0, description="learning rate of new modules (CBAM, head)")
    backbone_lr_mult: float = Field(0.1, gt=0.0, le=1.0, description="backbone rate = lr x this, when pretrained")
    weight_decay: float = Field(1e-4, ge=0.0, description="AdamW weight decay")
    warmup_epochs: float = Field(1.0, ge=0.0, description="linear warm-up, multiplied into the cosine schedule")
    progressive_resize: float = Field(
        0.67,
        gt=0.0,
        le=1.0,
        description="progressive resizing: training starts at this fraction of image_size and grows to all of it "
        "by three quarters of the run; 1 = off",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of the loss")
    box_guidance: float = Field(
        0.2,
        ge=0.0,
        description="weight of the loss that pulls a defect's heatmap into its sidecar box, "
        "for images that have one; 0 = off",
    )
    cell_guidance: float = Field(
        0.0,
        ge=0.0,
        description="weight of the loss that classifies each heatmap cell: a sidecar box's cells are its defect, "
        "the cells clear of it and all of an ok board's are ok; 0 = off",
    )
    ema_half_life: float = Field(
        0.5, ge=0.0, description="half-life in epochs of the weight average that is evaluated and kept; 0 = none"
    )

    augment: Augment = Field(
        Augment.DEFECT,
        description="defect (crops keep 70-100 %, flips, quarter turns, brightness) or imagenet (torchvision's)",
    )
    loss: LossKind = Field(LossKind.FOCAL, description="focal or ce (cross entropy)")
    focal_gamma: float = Field(2.0, ge=0.0, description="focusing exponent of the focal loss")
    focal_alpha: list[float] | None = Field(None, description="per-class alpha; overrides class_weights")
    class_weights: bool = Field(True, description="weight classes by inverse frequency")
    weighted_sampler: bool = Field(False, description="draw training images with inverse class frequency")

    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of each class held out for validation")
    seed: int = Field(0, description="seed of the split, the weights and the augmentations")
    workers: int = Field(0, ge=0, description="data loader worker processes")
    patience: int = Field(5, ge=1, description="epochs without improvement before stopping")
    validate_from: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="validate the epochs that end past this fraction of the run (the last always); "
        "the ones before record training figures only, and their minutes go to training; 0 = every epoch",
    )
    min_delta: float = Field(1e-4, ge=0.0, description="smallest change of the monitored metric that counts")
    monitor: str = Field("balanced_accuracy", description="validation metric that picks the best checkpoint")

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: AmpMode = Field(AmpMode.AUTO, description="mixed precision: auto (fp16 on CUDA, bf16 where the CPU has it)")
    compile: bool = Field(False, description="torch.compile the model")
    grad_checkpointing: bool = Field(False, description="recompute activations to save memory")
    channels_last: bool = Field(False, description="channels-last memory format")
    resume: bool = Field(False, description="continue from OUT/last.pt")
    cam_images: int = Field(16, ge=0, description="validation images in the report's CAM grid")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.monitor not in {"balanced_accuracy", "accuracy", "loss"}:
            raise ValueError("monitor must be balanced_accuracy, accuracy or loss")
        for field, allowed in (("freeze", FREEZABLE_STAGES), ("attention", ATTENTION_STAGES)):
            unknown = sorted(set(getattr(self, field) or []) - set(allowed))
            if unknown:
                raise ValueError(f"{field}: unknown stage(s) {unknown}; choose from {', '.join(allowed)}")
        return self

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from trained weights."""
        return self.weights.lower() != "none"

    @property
    def guided(self) -> bool:
        """Whether training reads the sidecar boxes (box or cell guidance)."""
        return self.box_guidance > 0 or self.cell_guidance > 0

    @property
    def freeze_stages(self) -> list[str]:
        """Stages to freeze, resolving the default against the weights."""
        if self.freeze is not None:
            return list(self.freeze)
        return list(DEFAULT_FREEZE) if self.pretrained else []


def load_train_config(path: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Merge a YAML file (optional) with flag overrides into a ``TrainConfig``.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is invalid; the
            message names the file and the field.
    """
    values: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_problems(exc)}") from exc
