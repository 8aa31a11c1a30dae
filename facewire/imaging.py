"""Sniff, check and decode untrusted image bytes.

The format and the dimensions come from the bytes themselves, never from a declared
content type. Dimensions are read from the header (Pillow opens lazily) so that a
decompression bomb is refused before a single pixel is allocated.
"""

from __future__ import annotations

import io
import re
import struct
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from facewire.errors import CorruptImage, ImageTooComplex, ImageTooLarge, UnsupportedImage
from facewire.messages import Size

#: Pillow format names we accept, by the name Pillow gives them.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)

BGRImage = NDArray[np.uint8]
GrayImage = NDArray[np.uint8]

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
    if fmt == "JPEG":
        _check_jpeg_structure(data)
    elif fmt == "PNG":
        _check_png_structure(data)
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


#: Progressive JPEGs use about 10 scans; each one is a full decoding pass, so thousands
#: of tiny scans turn a small file into minutes of CPU (libjpeg-turbo caps at 100 too).
MAX_JPEG_SCANS = 100
# The next marker after entropy-coded data: 0xFF followed by anything but a stuffed 0x00,
# a restart marker (D0-D7) or fill bytes.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _check_jpeg_structure(data: bytes) -> None:
    """Walk the JPEG's segments from SOI to EOI, counting scans.

    libjpeg "successfully" decodes a truncated file (missing rows come out grey), so an
    end-of-image marker is required. Segment lengths skip over embedded thumbnails, and
    whatever follows the EOI (camera trailers, motion-photo videos) is never looked at.
    """
    pos, scans = 2, 0  # just after SOI
    while True:
        while data[pos : pos + 2] == b"\xff\xff":  # fill bytes before a marker
            pos += 1
        if pos + 2 > len(data):
            raise CorruptImage("corrupt JPEG image: it is truncated (no end-of-image marker)")
        if data[pos] != 0xFF:
            raise CorruptImage("corrupt JPEG image: a segment is not where it should be")
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI: complete
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 4 > len(data):
            raise CorruptImage("corrupt JPEG image: it is truncated (no end-of-image marker)")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise CorruptImage("corrupt JPEG image: a segment has an impossible length")
        pos += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data follows, up to the next marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageTooComplex(
                    f"JPEG too complex: more than {MAX_JPEG_SCANS} scans (a normal one has ~10)"
                )
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise CorruptImage("corrupt JPEG image: it is truncated (no end-of-image marker)")
            pos = found.start()


#: imdecode flags that decode JPEG straight to grayscale at 1/2, 1/4 or 1/8 scale, in
#: libjpeg's DCT (so the skipped pixels are never computed), by reduction factor.
_REDUCED_GRAY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def _check_png_structure(data: bytes) -> None:
    """Walk the PNG's chunks to IEND, refusing any whose declared length runs past the
    data. OpenCV's decoder allocates what a chunk header declares before reading it, so
    a 45-byte file claiming a 4 GB IDAT would cost 4 GB (found by fuzzing)."""
    pos = 8  # after the signature
    while True:
        if pos + 8 > len(data):
            raise CorruptImage("corrupt PNG image: it is truncated (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > len(data):
            raise CorruptImage("corrupt PNG image: a chunk runs past the end of the data")
        if kind == b"IEND":
            return
        pos += 12 + length


def decode_bgr(data: bytes, fmt: str, expected: Size) -> BGRImage:
    """Decode to 3-channel BGR (grayscale and alpha are converted by IMREAD_COLOR)."""
    return _decode(data, fmt, expected, cv2.IMREAD_COLOR, 1)


def decode_gray(data: bytes, fmt: str, expected: Size, reduction: int = 1) -> GrayImage:
    """Decode to grayscale at ``1/reduction`` scale: 1, or for JPEGs also 2, 4 or 8.

    libjpeg rounds reduced sizes up, so a 1281-pixel row at 1/2 is 641 pixels.
    """
    if reduction != 1 and fmt != "JPEG":
        raise ValueError(f"only JPEG decodes at a reduced scale, not {fmt}")
    return _decode(data, fmt, expected, _REDUCED_GRAY[reduction], reduction)


def _decode(data: bytes, fmt: str, expected: Size, flags: int, reduction: int) -> BGRImage:
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        image = None
    shape_ok = image is not None and (
        image.ndim == 3 and image.shape[2] == 3 if flags == cv2.IMREAD_COLOR else image.ndim == 2
    )
    if image is None or not shape_ok:
        raise CorruptImage(f"corrupt {fmt} image: it cannot be decoded")
    height, width = image.shape[:2]
    want = (-(-expected.width // reduction), -(-expected.height // reduction))
    if (width, height) not in (want, want[::-1]):
        # The header and the decoder disagree (beyond an EXIF rotation): a crafted file.
        scale = f" at 1/{reduction} scale" if reduction > 1 else ""
        raise CorruptImage(
            f"corrupt {fmt} image: header says {expected.width}×{expected.height}, "
            f"data decodes to {width}×{height}{scale}"
        )
    return cast(BGRImage, image)
