import math

import pytest
import torch
import torch.nn.functional as F

from edge_inspector.errors import ConfigError
from trainer.config import TrainConfig
from trainer.losses import BoxGuidance, FocalLoss, balanced_class_weights, build_guidance, build_loss


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


def _map_with_peak(row: int, col: int) -> torch.Tensor:
    cam = torch.zeros(1, 2, 4, 4)
    cam[0, 1, row, col] = 4.0
    return cam


def test_box_guidance_rewards_a_map_that_peaks_inside_the_box() -> None:
    guidance = BoxGuidance(1.0, image_size=64)  # 4x4 map: cell (i, j) centred on pixel (16 i, 16 j)
    box = torch.tensor([[10.0, 26.0, 40.0, 40.0]])  # holds the centres of cells (2, 1) and (2, 2)
    label = torch.tensor([1])
    inside, outside = guidance(_map_with_peak(2, 1), label, box), guidance(_map_with_peak(0, 3), label, box)
    assert float(inside) < float(outside)
    # inside: -log(share of the two cells in the box) under a spatial softmax
    assert float(inside) == pytest.approx(-math.log((math.exp(4) + 1) / (math.exp(4) + 15)), rel=1e-5)
    assert float(BoxGuidance(0.5, 64)(_map_with_peak(2, 1), label, box)) == pytest.approx(float(inside) / 2)


def test_a_box_between_cell_centres_pulls_towards_the_nearest_cell() -> None:
    guidance = BoxGuidance(1.0, image_size=64)
    box = torch.tensor([[18.0, 34.0, 30.0, 46.0]])  # no centre inside; centre (24, 40) is nearest cell (2, 2)
    label = torch.tensor([1])
    assert float(guidance(_map_with_peak(2, 2), label, box)) < float(guidance(_map_with_peak(2, 1), label, box))


def test_images_without_a_box_add_nothing() -> None:
    guidance = BoxGuidance(1.0, image_size=64)
    cam = torch.cat([_map_with_peak(1, 1), torch.randn(1, 2, 4, 4)]).requires_grad_()
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [float("nan")] * 4])
    loss = guidance(cam, torch.tensor([1, 0]), boxes)
    loss.backward()
    assert loss.item() == pytest.approx(guidance(cam[:1], torch.tensor([1]), boxes[:1]).item())
    assert not cam.grad[1].any() and not cam.grad[0, 0].any()  # only the true class of the boxed image
    none = guidance(cam, torch.tensor([1, 0]), torch.full((2, 4), float("nan")))
    assert none.item() == 0.0 and none.requires_grad


def test_cell_guidance_labels_the_box_its_defect_and_the_board_clear_of_it_ok() -> None:
    guidance = BoxGuidance(0.0, image_size=64, cell_weight=1.0, ok_index=0)  # classes: 0 ok, 1 and 2 defects
    box = torch.tensor([[10.0, 26.0, 40.0, 40.0], [float("nan")] * 4, [float("nan")] * 4])
    cam = torch.randn(3, 3, 4, 4, requires_grad=True)
    loss = guidance(cam, torch.tensor([1, 0, 2]), box)
    loss.backward()
    # image 0: box cells (2, 1), (2, 2) are class 1; cells within 16 px of the box are left out
    near = {(r, c) for r in range(1, 4) for c in range(0, 4)}  # centres within a step of x 10-40, y 26-40
    expected = torch.full((3, 4, 4), -100)
    for row in range(4):
        for col in range(4):
            if (row, col) not in near:
                expected[0, row, col] = 0
    expected[0, 2, 1] = expected[0, 2, 2] = 1
    expected[1] = 0  # an ok board: every cell is ok
    reference = F.cross_entropy(cam.detach(), expected, ignore_index=-100)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert not cam.grad[2].any()  # a defect without a box: no cell is known
    rim = [(1, 0), (1, 3), (3, 1)]
    assert all(not cam.grad[0, :, r, c].any() for r, c in rim) and cam.grad[0, :, 0, 0].any()


def test_cell_guidance_needs_the_ok_class() -> None:
    with pytest.raises(ValueError, match="'ok' class"):
        BoxGuidance(0.2, image_size=64, cell_weight=0.5)


def test_build_guidance_follows_the_config(tmp_path) -> None:
    off = TrainConfig(data=tmp_path, out=tmp_path, box_guidance=0.0)
    assert build_guidance(off, ok_index=2) is None
    cells = build_guidance(TrainConfig(data=tmp_path, out=tmp_path, cell_guidance=0.5), ok_index=2)
    assert cells is not None and (cells.weight, cells.cell_weight, cells.ok_index) == (0.2, 0.5, 2)
    with pytest.raises(ConfigError, match="teaches the 'ok' class, and the data has none"):
        build_guidance(TrainConfig(data=tmp_path, out=tmp_path, cell_guidance=0.5), ok_index=None)
