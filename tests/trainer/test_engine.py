"""The training loop with the box loss: it moves a defect's map into its box."""

import copy

import torch

from trainer.engine import train_one_epoch
from trainer.losses import BoxGuidance, FocalLoss
from trainer.model import build_model


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
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        loader = batches if guidance is not None else [(x, y) for x, y, _ in batches]
        train_one_epoch(
            model,
            loader,
            FocalLoss(),
            optimizer,
            scheduler,
            device=torch.device("cpu"),
            amp_dtype=None,
            guidance=guidance,
        )
        shares[name] = _share_in_top_left(model, images[labels == 1])
    assert shares["guided"] > 0.5 > shares["plain"]  # 4 of 16 cells: a quarter without a pull
