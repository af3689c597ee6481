"""The training loop with the box loss: it moves a defect's map into its box."""

import copy

import pytest
import torch

from trainer.loop import train_one_epoch
from trainer.losses import BoxGuidance, FocalLoss
from trainer.model import build_model
from trainer.schedule import TrainingSchedule


def _share_in_top_left(model: torch.nn.Module, images: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        cam = model.forward_with_cam(images)[1][:, 1]  # 4x4 maps of class 1
    return float(cam.flatten(1).softmax(dim=1).view_as(cam)[:, :2, :2].sum(dim=(1, 2)).mean())


def test_the_box_loss_pulls_the_map_into_the_box() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(8, 3, 64, 64), torch.tensor([1, 0] * 4)
    boxes = torch.tensor([[0.0, 0.0, 24.0, 24.0], [float("nan")] * 4] * 4)  # the 2x2 top-left cells
    batches = [(images, labels, boxes)] * 12
    start = build_model(num_classes=2, weights="none", dropout=0.0)
    shares = {}
    for name, guidance in {"plain": None, "guided": BoxGuidance(1.0, image_size=64)}.items():
        model = copy.deepcopy(start)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        schedule = TrainingSchedule(total_steps=len(batches), warmup_steps=0, image_size=64, min_ratio=1.0)
        loader = batches if guidance is not None else [(x, y) for x, y, _ in batches]
        train_one_epoch(
            model,
            loader,
            FocalLoss(),
            optimizer,
            schedule,
            device=torch.device("cpu"),
            amp_dtype=None,
            guidance=guidance,
        )
        shares[name] = _share_in_top_left(model, images[labels == 1])
    assert shares["guided"] > 0.5 > shares["plain"]  # 4 of 16 cells: a quarter without a pull


def test_each_step_trains_at_the_schedules_side_and_rate_and_stops_when_it_ends() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 0, 1])
    model = build_model(num_classes=2, weights="none")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sides, rates = [], []
    model.conv1.register_forward_pre_hook(lambda _, args: sides.append(args[0].shape[-1]))
    schedule = TrainingSchedule(total_steps=8, warmup_steps=0, image_size=64, start_ratio=0.5, multiple=16)
    stats = train_one_epoch(
        model,
        [(images, labels)] * 12,  # more batches than the schedule allows
        FocalLoss(),
        optimizer,
        schedule,
        device=torch.device("cpu"),
        amp_dtype=None,
        on_step=lambda step: rates.append(step.lr),
    )
    assert stats.seen == 8 * 4 and schedule.over()
    assert sides == [32, 32, 32, 48, 48, 48, 64, 64]  # from half the side to all of it by three quarters
    assert rates[0] == pytest.approx(1e-3) and rates == sorted(rates, reverse=True) and rates[-1] < 1e-4
