import torch

from trainer.cbam import CBAM, ChannelAttention, SpatialAttention


def test_cbam_keeps_shape_and_passes_gradients() -> None:
    torch.manual_seed(0)
    block = CBAM(64)
    x = torch.randn(2, 64, 7, 9, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_attention_gates_only_scale_down() -> None:
    """Sigmoid gates lie in (0, 1): every output is a shrunk copy of its input."""
    torch.manual_seed(0)
    x = torch.rand(1, 32, 5, 5) + 0.1
    for module in (ChannelAttention(32), SpatialAttention(), CBAM(32)):
        y = module(x)
        assert torch.all(y > 0) and torch.all(y < x)


def test_channel_attention_is_constant_over_space() -> None:
    torch.manual_seed(0)
    x = torch.ones(1, 16, 4, 4)
    ratio = ChannelAttention(16)(x) / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio))
