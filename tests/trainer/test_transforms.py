import numpy as np
import pytest
import torch

from edge_inspector.preprocess import InputSpec, resize_and_crop
from trainer.config import Augment
from trainer.transforms import eval_geometry, eval_transform, train_transform


@pytest.mark.parametrize("size", [64, 96, 224])
def test_validation_geometry_equals_edge_preprocessing(size: int) -> None:
    spec = InputSpec.for_size(size)
    rng = np.random.default_rng(size)
    shapes = [(size, size), (size + 3, size + 50), (480, 640), (1080, 1920), (150, 100), (size - 10, size - 2)]
    shapes += [tuple(rng.integers(size // 2, 900, 2)) for _ in range(20)]
    for shape in shapes:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        edge = resize_and_crop(image, spec)
        assert edge.shape == (size, size, 3)
        assert np.array_equal(eval_geometry(spec)(image=image)["image"], edge), shape


def test_eval_transform_normalises_like_the_spec() -> None:
    spec = InputSpec.for_size(64)
    image = np.full((80, 80, 3), 128, np.uint8)
    tensor = eval_transform(spec)(image=image)["image"]
    expected = (128 / 255 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert tensor.shape == (3, 64, 64)
    assert torch.allclose(tensor[:, 10, 10], expected, atol=1e-5)


def test_train_transform_output_and_randomness() -> None:
    spec = InputSpec.for_size(64)
    image = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    pipeline = train_transform(spec)
    first, second = pipeline(image=image)["image"], pipeline(image=image)["image"]
    assert first.shape == (3, 64, 64) and first.dtype == torch.float32
    assert not torch.equal(first, second)


def test_imagenet_augmentation_crops_tighter_and_never_turns_the_image() -> None:
    spec = InputSpec.for_size(32)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = 255  # left half white: only a quarter turn makes the rows differ

    def spread(tensor: torch.Tensor, dim: tuple[int, int]) -> float:
        means = tensor.mean(dim=dim)
        return float(means.max() - means.min())

    ours, theirs = train_transform(spec), train_transform(spec, Augment.IMAGENET)
    outputs = {"ours": [ours(image=image)["image"] for _ in range(60)]}
    outputs["theirs"] = [theirs(image=image)["image"] for _ in range(60)]
    turned = {name: sum(spread(t, (0, 2)) > 0.5 for t in ts) for name, ts in outputs.items()}
    one_half = {name: sum(max(spread(t, (0, 1)), spread(t, (0, 2))) < 0.5 for t in ts) for name, ts in outputs.items()}
    assert turned["theirs"] == 0 and turned["ours"] > 3
    assert one_half["theirs"] > 0 and one_half["ours"] == 0  # ours keeps 70-100 % of the image, both halves
