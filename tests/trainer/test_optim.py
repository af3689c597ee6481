import pytest
import torch

from trainer.freezing import freeze_stages
from trainer.model import build_model
from trainer.optim import build_optimizer, scale_rates


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


def test_scale_rates_keeps_each_groups_own_rate() -> None:
    model = build_model(num_classes=4, weights="none")
    optimizer = build_optimizer(model, lr=1e-3, backbone_lr_mult=0.1, weight_decay=0.05)
    scale_rates(optimizer, 0.5)
    scale_rates(optimizer, 0.25)  # a factor of the initial rate, not of the last one
    groups = _groups(optimizer)
    assert groups["new"]["lr"] == pytest.approx(2.5e-4) and groups["backbone"]["lr"] == pytest.approx(2.5e-5)
