"""What POST /inspect decodes and what it refuses before decoding (no agent needed)."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from edge_inspector.web.uploads import MAX_PIXELS, UploadRejected, decode_image


def _encoded(ext: str) -> bytes:
    image = np.zeros((24, 40, 3), np.uint8)
    image[:, :, 2] = 200  # red in OpenCV's BGR
    return cv2.imencode(ext, image)[1].tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_decodes_to_rgb(ext: str) -> None:
    image = decode_image(_encoded(ext))
    assert image.shape == (24, 40, 3) and image[..., 0].mean() > 150 and image[..., 2].mean() < 50


def _with_png_size(data: bytes, width: int, height: int) -> bytes:
    header = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + header + struct.pack(">I", zlib.crc32(header)) + data[33:]


def _with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def _with_jpeg_size_after_fill(data: bytes, width: int, height: int) -> bytes:
    """The same, with a fill byte before the start of frame (legal: libjpeg decodes it)."""
    at = data.index(b"\xff\xc0")
    return _with_jpeg_size(data[:at] + b"\xff" + data[at:], width, height)


@pytest.mark.parametrize("resize", [_with_png_size, _with_jpeg_size, _with_jpeg_size_after_fill])
def test_huge_pictures_are_refused_from_their_header(resize) -> None:  # noqa: ANN001
    ext = ".png" if resize is _with_png_size else ".jpg"
    bomb = resize(_encoded(ext), 20_000, 20_000)  # 400 MP in a file of a few hundred bytes
    with pytest.raises(UploadRejected) as info:
        decode_image(bomb)
    assert info.value.status == 413 and f"{MAX_PIXELS} pixels" in str(info.value)
    assert decode_image(resize(_encoded(ext), 40, 24)).shape == (24, 40, 3)  # the header edit itself is sound


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GIF89a....", 415),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400),
        (_encoded(".jpg")[:40], 400),
    ],
)
def test_refusals(data: bytes, status: int) -> None:
    with pytest.raises(UploadRejected) as info:
        decode_image(data)
    assert info.value.status == status and "\n" not in str(info.value)


@pytest.mark.parametrize("size", [(1, 65_535), (8, 8), (4000, 100)])
def test_slivers_are_refused_before_they_are_blown_up(size: tuple[int, int]) -> None:
    """A 1x65535 image would be resized to 256x16.7M for the model: refused from its header."""
    sliver = _with_jpeg_size(_encoded(".jpg"), *size)
    with pytest.raises(UploadRejected) as info:
        decode_image(sliver)
    assert info.value.status == 400 and f"{size[0]}x{size[1]}" in str(info.value)
