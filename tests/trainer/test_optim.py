import pytest
import torch

from trainer.freezing import freeze_stages
from trainer.model import build_model
from trainer.optim import WarmupCosine, build_optimizer, warmup_cosine


def _groups(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {group["name"]: group for group in optimizer.param_groups}


def test_parameter_groups_and_rates() -> None:
    model = build_model(num_classes=4, weights="none")
    freeze_stages(model, ["stem", "layer1"])
    groups = _groups(build_optimizer(model, lr=1e-3, backbone_lr_mult=0.1, weight_decay=0.05))
    assert set(groups) == {"new", "new_no_decay", "backbone", "backbone_no_decay"}
    assert groups["new"]["lr"] == pytest.approx(1e-3)
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert groups["backbone_no_decay"]["lr"] == pytest.approx(1e-4)
    assert groups["new"]["weight_decay"] == 0.05 and groups["new_no_decay"]["weight_decay"] == 0.0

    ids = {name: {id(p) for p in group["params"]} for name, group in groups.items()}
    assert id(model.fc.weight) in ids["new"] and id(model.fc.bias) in ids["new_no_decay"]
    assert id(model.layer4[0].cbam.spatial.conv.weight) in ids["new"]
    assert id(model.layer3[0].block.conv1.weight) in ids["backbone"]
    assert id(model.layer2[0].bn1.weight) in ids["backbone_no_decay"]
    every = set().union(*ids.values())
    assert id(model.conv1.weight) not in every and id(model.layer1[0].conv1.weight) not in every
    assert len(every) == sum(1 for p in model.parameters() if p.requires_grad)


def test_warmup_then_cosine() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [param], "lr": 1.0}])
    scheduler = warmup_cosine(optimizer, WarmupCosine(warmup_steps=4, total_steps=20, min_ratio=0.01))
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False))
    assert rates[-1] == pytest.approx(0.01, abs=0.01)


def test_a_shortened_schedule_reaches_its_floor_sooner_and_survives_a_state_round_trip() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [param], "lr": 1.0}])
    shape = WarmupCosine(warmup_steps=2, total_steps=100)
    scheduler = warmup_cosine(optimizer, shape)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    shape.total_steps = 12  # what a time budget does after the first epoch
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    restored = warmup_cosine(optimizer, WarmupCosine(warmup_steps=2, total_steps=100))
    restored.load_state_dict(scheduler.state_dict())
    assert restored.lr_lambdas[0].total_steps == 12
