import copy

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


def test_the_fused_update_steps_as_adamw_does() -> None:
    torch.manual_seed(0)
    model = build_model(num_classes=3, weights="none")
    reference, start = copy.deepcopy(model), copy.deepcopy(model)
    fused = build_optimizer(model, lr=1e-2, backbone_lr_mult=1.0, weight_decay=0.05)
    assert fused.defaults["fused"], "torch 2.4 and later fuse AdamW on the CPU"
    twin = dict(zip(model.parameters(), reference.parameters(), strict=True))
    plain = torch.optim.AdamW(
        [{**group, "params": [twin[p] for p in group["params"]], "fused": False} for group in fused.param_groups]
    )
    for _ in range(3):  # the same gradients into both: Adam's update is sign-like, so tiny ones would differ
        for param in model.parameters():
            param.grad = torch.randn_like(param)
            twin[param].grad = param.grad.clone()
        fused.step()
        plain.step()
    named = zip(model.named_parameters(), reference.parameters(), start.parameters(), strict=True)
    for (name, stepped), twin_stepped, unstepped in named:
        assert not torch.equal(stepped, unstepped), f"{name} did not move"
        assert torch.allclose(stepped, twin_stepped, atol=1e-6), name
