from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from edge_inspector.heatmap import activation_peak
from edge_inspector.preprocess import InputSpec
from trainer.checkpoint import model_from_checkpoint
from trainer.cli import main as train_main
from trainer.errors import WeightsError
from trainer.model import AttentiveBottleneck, build_model, imagenet_weights_path


def test_logits_are_pooled_from_the_maps() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 96)
    model = build_model(num_classes=5, weights="none").eval()
    logits, cam = model.forward_with_cam(x)
    assert cam.shape == (2, 5, 6, 6)  # stride 16 by default
    assert torch.allclose(logits, model(x), atol=1e-5)
    pooled = 0.5 * (cam.mean(dim=(2, 3)) + cam.amax(dim=(2, 3)))  # mean-max by default
    assert torch.allclose(pooled + model.fc.bias, logits, atol=1e-5)
    mean = build_model(num_classes=5, weights="none", pooling="mean").eval()
    mean.load_state_dict(model.state_dict())
    mean_logits, mean_cam = mean.forward_with_cam(x)
    assert torch.equal(mean_cam, cam)  # the same weights give the same maps
    # ResNet50's head: global average pooling, then the linear layer
    torch.testing.assert_close(mean_logits, mean.fc(mean.features(x).mean(dim=(2, 3))), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        build_model(num_classes=5, weights="none", pooling="max")


def test_dropout_drops_whole_channels_before_the_head() -> None:
    torch.manual_seed(0)
    model = build_model(num_classes=3, weights="none", dropout=0.5, pooling="mean").train()
    features = torch.rand(4, 2048, 6, 6) + 0.1
    dropped = model.dropout(features)
    zero = dropped == 0
    per_channel = zero.flatten(2)
    assert (per_channel.all(dim=2) | ~per_channel.any(dim=2)).all()  # a channel is dropped everywhere or nowhere
    assert 0.3 < zero.float().mean() < 0.7


def test_attention_in_late_stages_only() -> None:
    model = build_model(num_classes=2, weights="none", attention=["layer4"])
    assert all(isinstance(block, AttentiveBottleneck) for block in model.layer4)
    assert not any(isinstance(block, AttentiveBottleneck) for block in model.layer3)
    plain = build_model(num_classes=2, weights="none", attention=[])
    assert not any(".cbam." in name for name, _ in plain.named_parameters())


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = build_model(num_classes=3, weights="none", dropout=0.0)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    model.eval()  # fixed BatchNorm statistics: both passes see the same function
    grads = []
    for checkpointing in (False, True):
        model.grad_checkpointing = checkpointing
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(model.layer1[0].conv1.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.usefixtures("offline")
def test_imagenet_offline_without_cache_says_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        build_model(num_classes=2, weights="imagenet")
    message = str(info.value)
    assert "could not be downloaded" in message and "refused" in message.lower()
    assert str(imagenet_weights_path()) in message and "--weights none" in message and "\n" not in message
    assert not imagenet_weights_path().exists()  # no partial file left in the cache


@pytest.mark.usefixtures("offline")
def test_imagenet_weights_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state dict in the hub cache is loaded (no network), then the head is replaced."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet50(weights=None)
    target = imagenet_weights_path()
    assert target.is_relative_to(tmp_path)
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    model = build_model(num_classes=3, weights="imagenet")
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.layer4[2].block.conv3.weight, reference.layer4[2].conv3.weight)
    assert model.fc.out_features == 3


def test_weights_from_a_file_and_bad_files(tmp_path: Path) -> None:
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(num_classes=2, weights=str(path))
    assert torch.equal(model.layer2[1].bn2.running_var, reference.layer2[1].bn2.running_var)

    with pytest.raises(WeightsError, match="not found"):
        build_model(num_classes=2, weights=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        build_model(num_classes=2, weights=str(junk))
    small = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), small)
    with pytest.raises(WeightsError, match="does not fit a ResNet50"):
        build_model(num_classes=2, weights=str(small))


@pytest.mark.usefixtures("offline")
def test_fetch_weights_command_offline_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert train_main(["fetch-weights"]) == 2
    err = capsys.readouterr().err
    assert "edge-train: error: ImageNet weights" in err and str(imagenet_weights_path()) in err
    imagenet_weights_path().parent.mkdir(parents=True, exist_ok=True)  # the failed download made the folder
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), imagenet_weights_path())
    assert train_main(["fetch-weights"]) == 0  # `make demo` then trains from them
    assert str(imagenet_weights_path()) in capsys.readouterr().out


def test_cam_stride_16_gives_a_map_twice_as_fine_with_the_same_weights() -> None:
    coarse = build_model(num_classes=3, weights="none", cam_stride=32).eval()
    fine = build_model(num_classes=3, weights="none", cam_stride=16).eval()
    fine.load_state_dict(coarse.state_dict())  # dilation changes no tensor's shape
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert coarse.forward_with_cam(x)[1].shape == (1, 3, 3, 3)
        assert fine.forward_with_cam(x)[1].shape == (1, 3, 6, 6)
    with pytest.raises(ValueError, match="cam_stride"):
        build_model(num_classes=2, weights="none", cam_stride=8)


@pytest.mark.parametrize("stride", [16, 32])
def test_each_map_cell_is_centred_where_the_heatmap_puts_it(stride: int) -> None:
    """The input pixels a cell depends on centre on (s*i, s*j), the alignment of edge_inspector.heatmap."""
    torch.manual_seed(0)
    model = build_model(num_classes=2, weights="none", cam_stride=stride).eval()
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    _, cam = model.forward_with_cam(x)
    row, col = cam.shape[2] // 2, cam.shape[3] // 2
    cam[0, 0, row, col].backward()
    influence = x.grad.abs().sum(dim=(0, 1))
    ys, xs = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    centre = (float((influence * xs).sum() / influence.sum()), float((influence * ys).sum() / influence.sum()))
    assert centre == pytest.approx(activation_peak(_one_hot(cam.shape[2:], row, col), 128, 128), abs=1.0)


def _one_hot(shape: tuple[int, ...], row: int, col: int) -> np.ndarray:
    hot = np.zeros(shape, np.float32)
    hot[row, col] = 1.0
    return hot


def test_a_checkpoint_from_before_the_pooling_option_rebuilds_with_mean_pooling() -> None:
    model = build_model(num_classes=3, weights="none", pooling="mean")
    state = {
        "classes": ["a", "b", "c"],
        "arch": {"attention": ["layer3", "layer4"], "dropout": 0.2, "cam_stride": 16},
        "model": model.state_dict(),
        "input": InputSpec.for_size(64).model_dump(mode="json"),
    }
    assert model_from_checkpoint(state)[0].pooling == "mean"
    state["arch"]["pooling"] = "mean-max"
    assert model_from_checkpoint(state)[0].pooling == "mean-max"
