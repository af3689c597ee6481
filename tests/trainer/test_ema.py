"""The weight average: its decay, its warm-up, and that it covers BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.ema import WeightAverage, half_life_decay


def test_half_life_decay_halves_a_weight_share_after_that_many_steps() -> None:
    assert half_life_decay(10) ** 10 == pytest.approx(0.5)
    assert half_life_decay(0) == 0.0


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_the_average_lags_the_weights_and_copies_nothing_by_reference() -> None:
    net = _net()
    average = WeightAverage(net, decay=0.9)
    start = average.model[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    average.update()
    # first update: the warm-up decay (1 + 1) / (10 + 1) = 2/11, below 0.9
    expected = start + (1 - 2 / 11) * 1.0
    assert torch.allclose(average.model[0].weight, expected)
    assert not average.model[0].weight.requires_grad
    assert average.model[0].weight.data_ptr() != net[0].weight.data_ptr()


def test_the_decay_reaches_its_set_value_after_the_warm_up() -> None:
    net = _net()
    average = WeightAverage(net, decay=0.5)
    for _ in range(20):
        average.update()
    with torch.no_grad():
        net[0].bias.fill_(2.0)
    before = average.model[0].bias.clone()
    average.update()
    assert torch.allclose(average.model[0].bias, 0.5 * before + 0.5 * 2.0)


def test_batchnorm_statistics_are_averaged_and_its_counter_copied() -> None:
    net = _net()
    average = WeightAverage(net, decay=0.0)
    net.train()
    net(torch.randn(16, 3) * 5 + 3)
    average.update()
    bn_avg, bn = average.model[1], net[1]
    assert torch.allclose(bn_avg.running_mean, bn.running_mean)
    assert torch.allclose(bn_avg.running_var, bn.running_var)
    assert int(bn_avg.num_batches_tracked) == int(bn.num_batches_tracked) == 1


def test_a_decay_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), decay=1.0)
