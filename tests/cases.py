"""Bad inputs (section 6), defined once and run against every protocol."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import cache

import numpy as np

from client import bench
from facewire.messages import DetectionRequest, Model
from facewire.settings import Settings
from tests import images

FACE = bench.FACE.read_bytes()
LIMIT = Settings().max_upload_bytes


PNG_CHUNK_BOMB = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAEAAAAAkCAIAAAC2bqvF//YM0ElEQVQ=")


@dataclass(frozen=True)
class BadCase:
    id: str
    image: bytes
    #: "invalid" -> REST 400 / INVALID_ARGUMENT; "too_large" -> 413 / RESOURCE_EXHAUSTED
    kind: str
    #: a phrase the error message must contain
    says: str
    model: str = "haar"
    save: bool = False
    frame_id: str = ""

    def core_request(self) -> DetectionRequest:
        """The core request an adapter would build (raises for an unknown model, as they do)."""
        return DetectionRequest(
            self.image, model=Model.parse(self.model), save=self.save, frame_id=self.frame_id
        )


@cache
def _face_image() -> np.ndarray:
    return images.decode(FACE)


def _truncated(ext: str) -> bytes:
    data = images.encode(_face_image(), ext)
    return data[: len(data) // 2]


@cache
def bad_cases() -> tuple[BadCase, ...]:
    return (
        BadCase("empty", b"", "invalid", "empty"),
        BadCase("text", b"hello, this is not an image\n" * 4, "invalid", "not a supported image"),
        BadCase("random", os.urandom(4096), "invalid", "not a supported image"),
        BadCase("jpeg-magic-garbage", b"\xff\xd8\xff" + b"\x00" * 64, "invalid", "corrupt"),
        BadCase("truncated-jpeg", FACE[: len(FACE) // 2], "invalid", "truncated"),
        BadCase("truncated-png", _truncated(".png"), "invalid", "corrupt"),
        BadCase("truncated-webp", _truncated(".webp"), "invalid", "corrupt"),
        BadCase("truncated-bmp", _truncated(".bmp"), "invalid", "corrupt"),
        BadCase("unknown-model", FACE, "invalid", "unknown model", model="resnet"),
        BadCase("frame-id-too-long", FACE, "invalid", "frame_id too long", frame_id="x" * 129),
        BadCase("echo-cannot-save", FACE, "invalid", "cannot save", model="echo", save=True),
        BadCase("over-upload-limit", b"\xff\xd8\xff" + b"\x00" * LIMIT, "too_large", "upload"),
        BadCase(
            "echo-over-upload-limit", b"\x00" * (LIMIT + 1), "too_large", "upload", model="echo"
        ),
        BadCase("png-bomb", images.png_with_header_size(10_000, 10_000), "too_large", "pixels"),
        BadCase("jpeg-bomb", images.jpeg_with_header_size(10_000, 10_000), "too_large", "pixels"),
        BadCase("webp-bomb", images.webp_with_header_size(16_000, 16_000), "too_large", "pixels"),
        BadCase("bmp-bomb", images.bmp_with_header_size(20_000, 20_000), "too_large", "pixels"),
        BadCase("jpeg-scan-bomb", images.jpeg_scan_bomb(500), "too_large", "too complex"),
        # Found by fuzz/fuzz_decode.py: 45 bytes whose IDAT claims 4 GB made OpenCV
        # allocate it all before reading.
        BadCase("png-chunk-length-bomb", PNG_CHUNK_BOMB, "invalid", "runs past the end"),
    )


def bad_case_ids() -> list[str]:
    return [case.id for case in bad_cases()]


def assert_clean_message(message: str) -> None:
    """Client-facing errors carry no stack traces and no OpenCV internals."""
    lowered = message.lower()
    for leak in ("traceback", "cv2", "opencv", "assert", "error: (-"):
        assert leak not in lowered, message
