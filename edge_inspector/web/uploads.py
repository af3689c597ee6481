"""What ``POST /inspect`` accepts: a JPEG or PNG, within the size limits, as a form field or a raw body.

Every refusal is an :class:`UploadRejected` with its HTTP status and one line
saying what was wrong, raised before anything reaches the model.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

__all__ = ["FIELD", "IMAGE_TYPES", "MAX_PIXELS", "UploadRejected", "decode_image", "read_upload"]

FIELD = "image"
IMAGE_TYPES = ("image/jpeg", "image/png")
MAX_PIXELS = 50_000_000
"""Larger images are refused before decoding: a small file can hold a huge picture (a decompression bomb)."""

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
# JPEG start-of-frame markers carry the size; C4 (Huffman tables), C8 and CC (arithmetic coding) do not
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class UploadRejected(Exception):
    """An upload refused: ``status`` is the HTTP status, the message says why in one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The image's bytes: the ``image`` field of a multipart form, or the body when it is image/jpeg or image/png.

    Raises:
        UploadRejected: no Content-Length (411), too large (413), another content type (415), no image (400).
    """
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise UploadRejected(411, "send a Content-Length header (curl -F image=@board.png does)")
    if int(length) > max_bytes:
        raise UploadRejected(413, f"upload of {int(length)} bytes is over the limit of {max_bytes} bytes")
    if int(length) == 0:
        raise UploadRejected(400, "empty body: send a JPEG or PNG image")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        return await request.body()
    if kind != "multipart/form-data":
        raise UploadRejected(
            415,
            f"content type {kind or 'none'!r}: send multipart/form-data with an {FIELD!r} field, or image/jpeg "
            "or image/png as the body",
        )
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception as exc:  # starlette raises its own exceptions for malformed or oversized forms
        raise UploadRejected(400, f"malformed multipart form: {exc}") from exc
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        raise UploadRejected(400, f"the form has no file field {FIELD!r} (curl -F {FIELD}=@board.png)")
    data = await upload.read()
    await form.close()
    if not data:
        raise UploadRejected(400, f"the {FIELD!r} field is empty")
    return data


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, None when the header does not say."""
    if data.startswith(_PNG) and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    at = 2
    while at + 9 <= len(data):  # JPEG: walk the marker segments up to the start of frame
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return None


def decode_image(data: bytes) -> np.ndarray:
    """The image as RGB pixels.

    Raises:
        UploadRejected: not a JPEG or PNG (415), over :data:`MAX_PIXELS` (413), or corrupt (400).
    """
    if not (data.startswith(_PNG) or data.startswith(_JPEG)):
        raise UploadRejected(415, "not a JPEG or PNG image")
    size = _declared_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise UploadRejected(413, f"image of {size[0]}x{size[1]} pixels is over the limit of {MAX_PIXELS} pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UploadRejected(400, "the image could not be decoded (truncated or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
