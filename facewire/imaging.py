"""Sniff, check and decode untrusted image bytes.

The format and the dimensions come from the bytes themselves, never from a declared
content type. Dimensions are read from the header (Pillow opens lazily) so that a
decompression bomb is refused before a single pixel is allocated.
"""

from __future__ import annotations

import io
import struct
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from facewire.errors import CorruptImage, ImageTooLarge, InvalidInput, UnsupportedImage
from facewire.messages import Size

#: Pillow format names we accept, by the name Pillow gives them.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)

BGRImage = NDArray[np.uint8]

# Pillow only reads headers here, and ``probe`` enforces our own configurable pixel limit
# right after; Pillow's process-wide bomb guard would only warn or refuse at other sizes.
Image.MAX_IMAGE_PIXELS = None


def sniff_format(data: bytes) -> str | None:
    """The format named by the leading bytes, or None when it is not one we accept."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def probe(data: bytes, max_pixels: int) -> tuple[str, Size]:
    """Format and size from the header alone; raises before anything large is allocated."""
    if not data:
        raise InvalidInput("empty image: the request carried no bytes")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage("not a supported image: expected JPEG, PNG, WebP or BMP bytes")
    try:
        if fmt == "WEBP":
            width, height = _webp_size(data)
        else:
            with Image.open(io.BytesIO(data), formats=[fmt]) as header:
                width, height = header.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error):
        raise CorruptImage(f"corrupt {fmt} image: its header cannot be read") from None
    if width <= 0 or height <= 0:
        raise CorruptImage(f"corrupt {fmt} image: it declares a {width}×{height} size")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {width}×{height} is {width * height} pixels, "
            f"over the limit of {max_pixels}"
        )
    if fmt == "JPEG" and not _jpeg_is_complete(data):
        raise CorruptImage("corrupt JPEG image: it is truncated (no end-of-image marker)")
    return fmt, Size(width, height)


def _webp_size(data: bytes) -> tuple[int, int]:
    """Canvas size from a WebP's first chunk header (RFC 9649, section 2.5 to 2.7).

    Pillow's WebP plugin allocates a canvas-sized decoder when it opens a file, so the
    header is read here instead. Raises ValueError or struct.error when it is cut short.
    """
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        if len(data) < 30:
            raise ValueError("short VP8X header")
        return width, height
    raise ValueError("unknown WebP chunk")


def _jpeg_is_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the last start-of-scan marker.

    libjpeg decodes a truncated file "successfully", filling the missing rows with grey,
    so completeness has to be checked here. Entropy-coded data byte-stuffs 0xFF, so both
    markers can only appear as real markers; data after the EOI (camera trailers) is fine.
    """
    last_scan = data.rfind(b"\xff\xda")
    return last_scan != -1 and data.find(b"\xff\xd9", last_scan + 2) != -1


def decode_bgr(data: bytes, fmt: str, expected: Size) -> BGRImage:
    """Decode to 3-channel BGR (grayscale and alpha are converted by IMREAD_COLOR)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise CorruptImage(f"corrupt {fmt} image: it cannot be decoded")
    height, width = image.shape[:2]
    if (width, height) not in (
        (expected.width, expected.height),
        (expected.height, expected.width),
    ):
        # The header and the decoder disagree (beyond an EXIF rotation): a crafted file.
        raise CorruptImage(
            f"corrupt {fmt} image: header says {expected.width}×{expected.height}, "
            f"data decodes to {width}×{height}"
        )
    return cast(BGRImage, image)
