import numpy as np
import pytest
from pydantic import ValidationError

from edge_inspector.heatmap import activation_peak, normalize_activation, overlay_heatmap, upsample_activation
from edge_inspector.preprocess import InputSpec, resize_and_crop, resized_shape


def test_spec_for_size_uses_the_standard_crop_ratio() -> None:
    assert InputSpec.for_size(224).resize == 256
    assert InputSpec.for_size(64).resize == 73
    with pytest.raises(ValidationError, match="at least the crop size"):
        InputSpec(size=96, resize=90)


def test_resize_keeps_aspect_and_crops_centre() -> None:
    assert resized_shape(480, 640, 256) == (256, 341)
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 140:160] = 255  # a bright bar in the middle survives the centre crop
    out = resize_and_crop(image, InputSpec(size=50, resize=50))
    assert out.shape == (50, 50, 3) and out.flags.c_contiguous
    assert out[:, 25].min() > 200 and out[:, 0].max() == 0


def test_resize_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        resize_and_crop(np.zeros((10, 10), np.uint8), InputSpec.for_size(64))


def test_overlay_highlights_the_hot_cell() -> None:
    image = np.full((64, 64, 3), 128, np.uint8)
    cam = np.zeros((2, 2), np.float32)
    cam[0, 1] = 5.0  # top-right hot
    out = overlay_heatmap(image, cam)
    assert out.shape == image.shape and out.dtype == np.uint8
    # JET maps hot to red, cold to blue
    assert out[5, 58, 0] > out[5, 58, 2] and out[58, 5, 2] > out[58, 5, 0]
    assert np.array_equal(normalize_activation(np.ones((3, 3))), np.zeros((3, 3)))


def test_upsampling_puts_each_cell_on_the_pixel_it_is_centred_on() -> None:
    cam = np.arange(16, dtype=np.float32).reshape(4, 4)
    big = upsample_activation(cam, 64, 128)  # 16 px a cell down, 32 across
    assert big.shape == (64, 128)
    for row in range(4):
        for col in range(4):
            assert big[16 * row, 32 * col] == pytest.approx(cam[row, col])
    assert big[63, 127] == pytest.approx(cam[3, 3])  # past the last centre: the edge value, not a fade
    assert big[8, 16] == pytest.approx(cam[:2, :2].mean())  # halfway between four centres
    assert activation_peak(cam, 64, 128) == (96.0, 48.0)
