"""The training run: data, model, loop, checkpoints, early stopping, report.

Runs as one process, or as every process of a ``torchrun`` job
(DistributedDataParallel); only rank 0 writes files.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from edge_inspector.preprocess import InputSpec
from trainer.checkpoint import RESUME_ONLY, checkpoint_meta, resume_from, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import DatasetSplit, ImageDataset, class_counts, discover
from trainer.distributed import (
    DistContext,
    ShardSampler,
    agree_max,
    gather_objects,
    init_distributed,
    shutdown_distributed,
)
from trainer.ema import WeightAverage, half_life_decay
from trainer.evaluation import write_evaluation, write_split
from trainer.freezing import count_parameters, freeze_stages
from trainer.loop import EpochStats, Predictions, StepStats, evaluate, resolve_amp, train_one_epoch
from trainer.losses import build_guidance, build_loss
from trainer.metrics import classification_metrics
from trainer.model import DefectNet, build_model
from trainer.optim import build_optimizer
from trainer.schedule import TrainingSchedule
from trainer.transforms import eval_transform, train_transform

__all__ = ["FitResult", "Progress", "fit", "resolve_device"]

log = logging.getLogger(__name__)

HISTORY_FIELDS = (
    "epoch",
    "lr",
    "train_images",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "seconds",
)


class Progress(Protocol):
    """A progress display for one epoch (the CLI passes a tqdm bar)."""

    def update(self, stats: StepStats) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[int, str], Progress]


@dataclass(frozen=True)
class FitResult:
    """Where the run went and how it ended."""

    run_dir: Path
    epochs_run: int
    best_epoch: int
    metrics: dict[str, Any]


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    """``auto`` means this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{ctx.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loaders(
    cfg: TrainConfig, split: DatasetSplit, spec: InputSpec, ctx: DistContext, device: torch.device
) -> tuple[DataLoader, DataLoader, DistributedSampler | None]:
    boxes = cfg.guided
    train_set = ImageDataset(split.train, train_transform(spec, cfg.augment, boxes=boxes), boxes=boxes)
    val_set = ImageDataset(split.val, eval_transform(spec))
    generator = torch.Generator().manual_seed(cfg.seed + ctx.rank)
    dist_sampler: DistributedSampler | None = None
    if cfg.weighted_sampler:
        counts = class_counts(split.train, len(split.classes))
        weights = [1.0 / counts[s.label] for s in split.train]
        sampler: Any = WeightedRandomSampler(weights, len(weights) // ctx.world_size, generator=generator)
    elif ctx.enabled:
        sampler = dist_sampler = DistributedSampler(
            train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed
        )
    else:
        sampler = None
    common = {"num_workers": cfg.workers, "pin_memory": device.type == "cuda", "persistent_workers": cfg.workers > 0}
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=sampler is None,
        generator=generator if sampler is None else None,
        drop_last=len(train_set) // ctx.world_size > cfg.batch_size,
        **common,
    )
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, sampler=ShardSampler(len(val_set), ctx), **common)
    return train_loader, val_loader, dist_sampler


def _score(metrics: dict[str, Any], val_loss: float, monitor: str) -> float:
    return -val_loss if monitor == "loss" else float(metrics[monitor])


def _log_epoch(row: dict[str, Any], done: float, improved: bool) -> None:
    head = "epoch {epoch} ({done:.0f} % of the run) train loss {train_loss:.4f} acc {train_accuracy:.3f}"
    validation = "not validated (validate_from)"
    if "val_loss" in row:
        validation = "val loss {val_loss:.4f} acc {val_accuracy:.3f} bal-acc {val_balanced_accuracy:.3f}".format(**row)
        validation += "  *best*" if improved else ""
    log.info("%s | %s (%.1f s)", head.format(done=100 * done, **row), validation, row["seconds"])


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def _prepare_model(cfg: TrainConfig, num_classes: int, device: torch.device) -> DefectNet:
    model = build_model(
        num_classes=num_classes,
        weights=cfg.weights,
        attention=cfg.attention,
        dropout=cfg.dropout,
        cam_stride=cfg.cam_stride,
        pooling=cfg.pooling,
    )
    freeze_stages(model, cfg.freeze_stages)
    model.grad_checkpointing = cfg.grad_checkpointing
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def fit(cfg: TrainConfig, *, progress: ProgressFactory | None = None) -> FitResult:
    """Train a defect classifier as ``cfg`` says and write its run directory.

    Raises:
        DatasetError, WeightsError, CheckpointError: the user's input cannot
            be used; the message says why.
    """
    ctx = init_distributed(cfg.device)
    try:
        return _fit(cfg, ctx, progress)
    finally:
        shutdown_distributed(ctx)


def _fit(cfg: TrainConfig, ctx: DistContext, progress: ProgressFactory | None) -> FitResult:
    device = resolve_device(cfg.device, ctx)
    _seed_everything(cfg.seed + ctx.rank)
    split = discover(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    classes = split.classes
    ok_index = classes.index(cfg.ok_class) if cfg.ok_class in classes else None
    train_counts = class_counts(split.train, len(classes))
    spec = InputSpec.for_size(cfg.image_size)
    run_dir = cfg.out
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "%d classes, %d training and %d validation images (%s split)",
            len(classes),
            len(split.train),
            len(split.val),
            "given" if split.given_split else "seeded stratified",
        )
        if ok_index is None:
            log.warning("no '%s' class: defect-versus-ok figures are left out", cfg.ok_class)

    model = _prepare_model(cfg, len(classes), device)
    trainable, total = count_parameters(model)
    if ctx.is_main:
        frozen = ", ".join(cfg.freeze_stages) or "nothing"
        reason = "" if cfg.pretrained or cfg.freeze is not None else " (no pretrained weights: every stage trains)"
        log.info("weights %s; frozen: %s%s", cfg.weights, frozen, reason)
        log.info("trainable parameters: %s of %s", f"{trainable:,}", f"{total:,}")

    train_loader, val_loader, dist_sampler = _loaders(cfg, split, spec, ctx, device)
    loss_fn = build_loss(cfg, train_counts).to(device)
    guidance = build_guidance(cfg, ok_index)
    optimizer = build_optimizer(
        model,
        lr=cfg.lr,
        backbone_lr_mult=cfg.backbone_lr_mult if cfg.pretrained else 1.0,
        weight_decay=cfg.weight_decay,
    )
    steps = len(train_loader)
    schedule = TrainingSchedule(
        total_steps=cfg.epochs * steps,
        warmup_steps=round(cfg.warmup_epochs * steps),
        image_size=cfg.image_size,
        start_ratio=cfg.progressive_resize,
        multiple=cfg.cam_stride,
        budget_s=cfg.time_budget_min * 60 if cfg.time_budget_min is not None else None,
        agree=lambda progress: agree_max(ctx, progress, device),
    )
    amp_dtype = resolve_amp(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    average = WeightAverage(model, half_life_decay(cfg.ema_half_life * steps)) if cfg.ema_half_life else None
    evaluated = average.model if average is not None else model
    history: list[dict[str, Any]] = []
    best_score, best_epoch, stale, start_epoch = -float("inf"), 0, 0, 0
    if cfg.resume:
        state = resume_from(run_dir / "last.pt", classes, model, average, optimizer, schedule, scaler)
        history, start_epoch = state["history"], state["epoch"]
        best_score, best_epoch, stale = state["best_score"], state["best_epoch"], state["stale_epochs"]
        if ctx.is_main:
            log.info("resuming after epoch %d (best %.4f at epoch %d)", start_epoch, best_score, best_epoch)
    if ctx.is_main and cfg.time_budget_min is not None:
        log.info(
            "time budget %g min: training ends when it is spent, or after %d epochs", cfg.time_budget_min, cfg.epochs
        )

    net: torch.nn.Module = DistributedDataParallel(model) if ctx.enabled else model
    if cfg.compile:
        net = torch.compile(net)
    meta: dict[str, Any] = {}
    if ctx.is_main:
        meta = checkpoint_meta(cfg, split, spec)
        (run_dir / "config.json").write_text(json.dumps(meta["config"], indent=2))
        write_split(run_dir / "split.json", split, cfg.data)

    epoch = start_epoch
    while not schedule.over():
        epoch += 1
        started = time.perf_counter()
        if dist_sampler is not None:
            dist_sampler.set_epoch(epoch)
        bar = progress(steps, f"epoch {epoch}") if progress and ctx.is_main else None
        try:
            local = train_one_epoch(
                net,
                train_loader,
                loss_fn,
                optimizer,
                schedule,
                device=device,
                amp_dtype=amp_dtype,
                scaler=scaler,
                channels_last=cfg.channels_last,
                average=average,
                guidance=guidance,
                on_step=bar.update if bar else None,
            )
        finally:
            if bar:
                bar.close()
        train = EpochStats.total(gather_objects(ctx, local))
        done = schedule.progress()  # on every rank: agreeing is a collective
        row: dict[str, Any] = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_images": train.seen,
            "train_loss": train.loss_sum / max(1, train.seen),
            "train_accuracy": train.correct / max(1, train.seen),
        }
        metrics: dict[str, Any] | None = None
        improved = False
        if done >= cfg.validate_from:  # always the last epoch, which ends the run at progress 1
            shard = evaluate(
                evaluated,
                val_loader,
                device=device,
                amp_dtype=amp_dtype,
                loss_fn=loss_fn,
                channels_last=cfg.channels_last,
            )
            preds = Predictions.merged(gather_objects(ctx, shard))
            metrics = classification_metrics(
                preds.probs, preds.labels, classes, ok_index=ok_index, threshold=cfg.threshold
            )
            val_loss = preds.loss_sum / max(1, len(preds.labels))
            row.update(
                val_loss=val_loss, val_accuracy=metrics["accuracy"], val_balanced_accuracy=metrics["balanced_accuracy"]
            )
            score = _score(metrics, val_loss, cfg.monitor)
            improved = score > best_score + cfg.min_delta
            if improved:
                best_score, best_epoch, stale = score, epoch, 0
            else:
                stale += 1
        row["seconds"] = round(time.perf_counter() - started, 2)
        history.append(row)
        if ctx.is_main:
            _log_epoch(row, done, improved)
            state = {
                **meta,
                "model": evaluated.state_dict(),
                **({"train_model": model.state_dict(), "ema_updates": average.updates} if average else {}),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch,
                "metrics": metrics,
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "stale_epochs": stale,
            }
            save_checkpoint(run_dir / "last.pt", state)
            if improved:
                save_checkpoint(run_dir / "best.pt", {k: v for k, v in state.items() if k not in RESUME_ONLY})
            _write_history(run_dir / "history.csv", history)
        if stale >= cfg.patience:
            if ctx.is_main:
                log.info("early stop: no %s improvement for %d epochs", cfg.monitor, stale)
            break

    final: dict[str, Any] = {}
    if ctx.is_main:
        final = write_evaluation(run_dir, device=device)
    if ctx.enabled:
        torch.distributed.barrier()
    return FitResult(run_dir, epoch - start_epoch, best_epoch, final)
