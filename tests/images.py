"""Images made at test time: other formats, odd sizes, truncations and bombs."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def solid_jpeg(width: int, height: int, value: int = 128) -> bytes:
    return encode(np.full((height, width, 3), value, np.uint8), ".jpg")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int, height: int) -> bytes:
    """A real, decodable grayscale PNG of zeros: a few hundred KB that inflate to w*h bytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (valid CRC, far too little data)."""
    real = encode(np.zeros((16, 16, 3), np.uint8), ".png")
    ihdr = struct.pack(">II", width, height) + real[24:29]
    return real[:8] + _png_chunk(b"IHDR", ihdr) + real[33:]


def jpeg_with_header_size(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 marker is patched to claim ``width`` x ``height``."""
    data = bytearray(solid_jpeg(16, 16))
    sof = data.find(b"\xff\xc0")
    assert sof != -1
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_with_header_size(width: int, height: int) -> bytes:
    """A VP8X WebP header claiming a ``width`` x ``height`` canvas."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def bmp_with_header_size(width: int, height: int) -> bytes:
    data = bytearray(encode(np.zeros((4, 4, 3), np.uint8), ".bmp"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def jpeg_scan_bomb(scans: int) -> bytes:
    """A valid progressive JPEG whose last scan is repeated: each repeat is a decoding pass."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode(noise, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    last_scan, end = data.rfind(b"\xff\xda"), len(data) - 2  # up to the EOI
    return data[:end] + data[last_scan:end] * scans + b"\xff\xd9"
