"""What ``POST /inspect`` accepts: a JPEG or PNG, within the size limits, as a form field or a raw body.

Every refusal is an :class:`UploadRejected` with its HTTP status and one line
saying what was wrong, raised before anything reaches the model.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import cv2
import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

__all__ = [
    "FIELD",
    "IMAGE_TYPES",
    "MAX_ASPECT",
    "MAX_PIXELS",
    "MIN_SIDE",
    "UploadRejected",
    "decode_image",
    "read_upload",
]

FIELD = "image"
IMAGE_TYPES = ("image/jpeg", "image/png")
MAX_PIXELS = 50_000_000
"""Larger images are refused before decoding: a small file can hold a huge picture (a decompression bomb)."""
MIN_SIDE = 16
MAX_ASPECT = 20
"""A sliver of an image would be blown up to a huge one when resized for the model: refused."""

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

    The body is counted as it arrives, whatever ``Content-Length`` or chunked
    encoding say, and refused once over ``max_bytes``.

    Raises:
        UploadRejected: too large (413), another content type (415), no image (400).
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise UploadRejected(413, f"upload of {int(length)} bytes is over the limit of {max_bytes} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in IMAGE_TYPES and kind != "multipart/form-data":
        raise UploadRejected(
            415,
            f"content type {kind or 'none'!r}: send multipart/form-data with an {FIELD!r} field, or image/jpeg "
            "or image/png as the body",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise UploadRejected(413, f"upload over the limit of {max_bytes} bytes")
    if not body:
        raise UploadRejected(400, "empty body: send a JPEG or PNG image")
    if kind in IMAGE_TYPES:
        return bytes(body)
    return await _form_field(request, bytes(body))


async def _form_field(request: Request, body: bytes) -> bytes:
    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=8).parse()
    except Exception as exc:  # starlette's MultiPartException, a missing boundary: a malformed form
        raise UploadRejected(400, f"malformed multipart form: {exc}") from exc
    try:
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise UploadRejected(400, f"the form has no file field {FIELD!r} (curl -F {FIELD}=@board.png)")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise UploadRejected(400, f"the {FIELD!r} field is empty")
    return data


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, None when the header does not say."""
    if data.startswith(_PNG):
        return struct.unpack(">II", data[16:24]) if len(data) >= 24 else None
    at = 2
    while at + 4 <= len(data):  # JPEG: walk the marker segments up to the start of frame
        if data[at] != 0xFF:
            return None
        if data[at + 1] == 0xFF:  # fill byte before a marker
            at += 1
            continue
        marker = data[at + 1]
        if marker in _SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return None


def decode_image(data: bytes) -> np.ndarray:
    """The image as RGB pixels.

    Raises:
        UploadRejected: not a JPEG or PNG (415), over :data:`MAX_PIXELS` (413), a sliver (400: under
            :data:`MIN_SIDE`, or longer than :data:`MAX_ASPECT` times its width), or corrupt (400).
    """
    if not (data.startswith(_PNG) or data.startswith(_JPEG)):
        raise UploadRejected(415, "not a JPEG or PNG image")
    size = _declared_size(data)
    if size is None:
        raise UploadRejected(400, "the image's size cannot be read from its header (truncated or corrupt)")
    width, height = size
    if width * height > MAX_PIXELS:
        raise UploadRejected(413, f"image of {width}x{height} pixels is over the limit of {MAX_PIXELS} pixels")
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise UploadRejected(
            400, f"image of {width}x{height} pixels: sides of at least {MIN_SIDE} px and at most {MAX_ASPECT}:1 please"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UploadRejected(400, "the image could not be decoded (truncated or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
