import pytest
import torch
from torch import nn

from trainer.freezing import count_parameters, freeze_stages
from trainer.model import build_model
from trainer.optim import build_optimizer


@pytest.fixture(scope="module")
def stepped():
    """A model with stem..layer2 frozen, before and after two training steps."""
    torch.manual_seed(0)
    model = build_model(num_classes=3, weights="none")
    freeze_stages(model, ["stem", "layer1", "layer2"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, lr=1e-2, backbone_lr_mult=0.1, weight_decay=0.0)
    model.train()
    # two steps: residual branches start at zero (zero_init_residual), so the
    # first step only wakes their last BatchNorm and the second reaches the convs
    for _ in range(2):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        optimizer.step()
    return model, before, model.state_dict()


def _changed(before, after, key: str) -> bool:
    return not torch.equal(before[key], after[key])


def test_frozen_weights_and_batchnorm_statistics_unchanged(stepped) -> None:
    model, before, after = stepped
    frozen = [k for k in before if k.split(".")[0] in {"conv1", "bn1", "layer1", "layer2"}]
    assert any(k.endswith("running_mean") for k in frozen) and any(k.endswith("weight") for k in frozen)
    assert [k for k in frozen if _changed(before, after, k)] == []


def test_unfrozen_weights_and_statistics_changed(stepped) -> None:
    _, before, after = stepped
    for key in (
        "layer3.0.block.conv1.weight",
        "layer4.2.cbam.spatial.conv.weight",
        "fc.weight",
        "layer3.0.block.bn1.running_mean",
        "layer4.0.block.bn3.running_var",
    ):
        assert _changed(before, after, key), key


def test_frozen_stages_stay_in_eval_mode(stepped) -> None:
    model, _, _ = stepped
    model.train()
    assert not model.bn1.training and not model.layer2[0].bn1.training
    assert model.layer3.training and model.fc.training
    model.eval()
    assert not model.layer3.training


def test_trainable_count_excludes_frozen() -> None:
    model = build_model(num_classes=2, weights="none")
    trainable_all, total = count_parameters(model)
    assert trainable_all == total
    freeze_stages(model, ["stem", "layer1", "layer2", "layer3", "layer4"])
    trainable, _ = count_parameters(model)
    head = sum(p.numel() for p in model.fc.parameters())
    cbam = sum(p.numel() for n, p in model.named_parameters() if ".cbam." in n)
    assert trainable == head  # CBAM sits inside the frozen stages here
    assert cbam > 0


def test_unknown_stage_refused() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        freeze_stages(build_model(num_classes=2, weights="none"), ["layer9"])
