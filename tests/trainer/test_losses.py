import pytest
import torch
import torch.nn.functional as F

from edge_inspector.errors import ConfigError
from trainer.config import TrainConfig
from trainer.losses import FocalLoss, balanced_class_weights, build_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(16, 5), torch.randint(0, 5, (16,))


def test_focal_equals_cross_entropy_at_gamma_zero(batch) -> None:
    logits, target = batch
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_focal_with_alpha_equals_weighted_cross_entropy_at_gamma_zero(batch) -> None:
    logits, target = batch
    alpha = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25])
    expected = F.cross_entropy(logits, target, weight=alpha)
    assert torch.allclose(FocalLoss(gamma=0.0, alpha=alpha)(logits, target), expected, atol=1e-6)


def test_alpha_scales_a_class_contribution() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    target = torch.tensor([0, 1])
    even = FocalLoss(gamma=2.0, alpha=torch.tensor([1.0, 1.0]))(logits, target)
    favour_hard = FocalLoss(gamma=2.0, alpha=torch.tensor([1.0, 9.0]))(logits, target)
    # sample 1 is the harder one; weighting its class up raises the mean loss
    assert favour_hard > even


def test_focal_down_weights_easy_examples() -> None:
    easy = torch.tensor([[6.0, 0.0]])
    hard = torch.tensor([[0.2, 0.0]])
    target = torch.tensor([0])
    ratio_easy = FocalLoss(gamma=2.0)(easy, target) / F.cross_entropy(easy, target)
    ratio_hard = FocalLoss(gamma=2.0)(hard, target) / F.cross_entropy(hard, target)
    assert ratio_easy < 0.01 < ratio_hard


def test_balanced_weights_favour_rare_classes() -> None:
    weights = balanced_class_weights([90, 10, 0])
    assert weights[1] == pytest.approx(9 * weights[0])
    assert weights[2] == 0
    assert weights.sum() == pytest.approx(3.0)


def test_build_loss_checks_alpha_length(tmp_path) -> None:
    config = TrainConfig(data=tmp_path, out=tmp_path, focal_alpha=[1.0, 2.0])
    with pytest.raises(ConfigError, match="focal_alpha has 2 values for 3 classes"):
        build_loss(config, [1, 1, 1])
    ce = TrainConfig(data=tmp_path, out=tmp_path, loss="ce", focal_gamma=3.0)
    assert build_loss(ce, [1, 1]).gamma == 0.0
    assert build_loss(TrainConfig(data=tmp_path, out=tmp_path, focal_gamma=3.0), [1, 1]).gamma == 3.0
