"""The face pipeline: bytes in, boxes and stage timings out."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import cast

import cv2

from facewire.detector import FaceDetector, FaceRect, Lend
from facewire.errors import Forbidden, InvalidInput, PayloadTooLarge
from facewire.imaging import BGRImage, GrayImage, decode_bgr, decode_gray, probe
from facewire.messages import (
    DETECT_SIZE,
    FRAME_SIZE,
    Box,
    Crop,
    DetectionRequest,
    DetectionResult,
    Model,
    Size,
    Timings,
)
from facewire.settings import Settings
from facewire.storage import FrameStore, Record


def _ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


def square_crop(width: int, height: int) -> Crop:
    """The largest centred square of a width × height image."""
    side = min(height, width)
    return Crop((width - side) // 2, (height - side) // 2, side)


def centre_crop(image: BGRImage) -> tuple[BGRImage, Crop]:
    """The largest centred square, resized to FRAME_SIZE when it is another size."""
    height, width = image.shape[:2]
    where = square_crop(width, height)
    crop = image[where.y : where.y + where.size, where.x : where.x + where.size]
    if where.size != FRAME_SIZE:
        shrinking = where.size > FRAME_SIZE
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        crop = cast(
            BGRImage, cv2.resize(crop, (FRAME_SIZE, FRAME_SIZE), interpolation=interpolation)
        )
    return crop, where


def detector_input(frame: BGRImage) -> GrayImage:
    """The FRAME_SIZE frame shrunk to DETECT_SIZE and made grayscale."""
    small = cv2.resize(frame, (DETECT_SIZE, DETECT_SIZE), interpolation=cv2.INTER_AREA)
    return cast(GrayImage, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))


def reduction_for(fmt: str, size: Size) -> int:
    """The largest decoding scale 1/r that still leaves DETECT_SIZE pixels of crop; 1
    (decode everything) for formats other than JPEG, which libjpeg scales in its DCT."""
    side = min(size.width, size.height)
    return next((r for r in (8, 4, 2) if side / r >= DETECT_SIZE and fmt == "JPEG"), 1)


def gray_detector_input(
    gray: GrayImage, size: Size, reduction: int
) -> tuple[GrayImage, Crop, Size]:
    """The detector's input from a grayscale image decoded at 1/``reduction`` scale.

    Returns it with the crop and the (EXIF-rotated) image size in full-size pixels, the
    same terms as the full-colour path's.
    """
    height, width = gray.shape
    upright = (width, height) == (-(-size.width // reduction), -(-size.height // reduction))
    full = size if upright else Size(size.height, size.width)
    where = square_crop(full.width, full.height)
    x, y = round(where.x / reduction), round(where.y / reduction)
    side = min(round(where.size / reduction), width - x, height - y)
    square = gray[y : y + side, x : x + side]
    if side != DETECT_SIZE:
        interpolation = cv2.INTER_AREA if side > DETECT_SIZE else cv2.INTER_LINEAR
        resized = cv2.resize(square, (DETECT_SIZE, DETECT_SIZE), interpolation=interpolation)
        square = cast(GrayImage, resized)
    return square, where, full


def to_frame_boxes(rects: list[FaceRect]) -> tuple[Box, ...]:
    """Detector rectangles rescaled into the FRAME_SIZE frame, rounded and clipped. The
    size is rounded on its own, not as the difference of two rounded edges, so that the
    cascade's square windows stay square."""
    scale = FRAME_SIZE / DETECT_SIZE
    boxes = []
    for x, y, w, h in rects:
        left = min(max(math.floor(x * scale + 0.5), 0), FRAME_SIZE)
        top = min(max(math.floor(y * scale + 0.5), 0), FRAME_SIZE)
        width = min(math.floor(w * scale + 0.5), FRAME_SIZE - left)
        height = min(math.floor(h * scale + 0.5), FRAME_SIZE - top)
        boxes.append(Box(left, top, width, height))
    return tuple(boxes)


class Pipeline:
    """Validates and runs one request. ``run`` is CPU-bound: call it off the event loop."""

    def __init__(
        self, settings: Settings, detector: FaceDetector, store: FrameStore | None
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.store = store

    def validate(self, request: DetectionRequest) -> None:
        """The cheap checks every model gets, echo included (no decoding here)."""
        limit = self.settings.max_upload_bytes
        if len(request.image) > limit:
            raise PayloadTooLarge(
                f"upload too large: {len(request.image)} bytes, over the limit of {limit}"
            )
        if not request.image:
            raise InvalidInput("empty image: the request carried no bytes")
        if len(request.frame_id) > self.settings.max_frame_id_length:
            raise InvalidInput(
                f"frame_id too long: {len(request.frame_id)} characters, "
                f"over the limit of {self.settings.max_frame_id_length}"
            )
        if not request.frame_id.isprintable():
            raise InvalidInput("frame_id must not contain control characters")
        if request.save and request.model is Model.ECHO:
            raise InvalidInput("model 'echo' does not decode the image, so it cannot save it")
        if request.save and not self.settings.save_enabled:
            raise Forbidden("saving is turned off on this server")
        if request.save and self.store is None:
            raise InvalidInput("this service has no storage configured")

    def echo(self, request: DetectionRequest) -> DetectionResult:
        """The answer for model ``echo``: no image work at all."""
        self.validate(request)
        return DetectionResult(frame_id=request.frame_id, model=request.model)

    def warm_thread(self) -> None:
        """Load this thread's cascade now rather than in its first request."""
        self.detector.classifier()

    def run(
        self,
        request: DetectionRequest,
        enqueued_ns: int | None = None,
        helpers: Lend | None = None,
        spare: int = 0,
    ) -> DetectionResult:
        """Run one request on this thread; ``helpers`` may lend up to ``spare`` more
        threads to its detection (see ``FaceDetector.detect``). ``echo`` comes here too,
        so that it waits for a thread like every model, and reports that wait."""
        start = time.perf_counter_ns()
        queue = _ms(enqueued_ns, start) if enqueued_ns is not None else 0.0
        if request.model is Model.ECHO:
            return replace(self.echo(request), timings=Timings(queue=queue))
        self.validate(request)

        fmt, size = probe(request.image, self.settings.max_image_pixels)
        frame: BGRImage | None = None
        mode = self.settings.decode_mode
        if request.save or mode == "colour":
            # Saving stores the full-colour 720 crop.
            image = decode_bgr(request.image, fmt, size)
            decoded = time.perf_counter_ns()
            image_size = Size(int(image.shape[1]), int(image.shape[0]))
            frame, crop = centre_crop(image)
            gray = detector_input(frame)
        else:
            reduction = reduction_for(fmt, size) if mode == "reduced" else 1
            gray_image = decode_gray(request.image, fmt, size, reduction)
            decoded = time.perf_counter_ns()
            gray, crop, image_size = gray_detector_input(gray_image, size, reduction)
        preprocessed = time.perf_counter_ns()

        boxes: tuple[Box, ...] = ()
        if request.model is Model.HAAR:
            rects = self.detector.detect(gray, helpers, spare)
            boxes = to_frame_boxes(rects)
        detected = time.perf_counter_ns()

        timings = Timings(
            decode=_ms(start, decoded),
            preprocess=_ms(decoded, preprocessed),
            detect=_ms(preprocessed, detected),
            total=_ms(start, detected),
            queue=queue,
        )
        result = DetectionResult(
            frame_id=request.frame_id,
            model=request.model,
            boxes=boxes,
            crop=crop,
            image=image_size,
            timings=timings,
        )
        if not request.save:
            return result
        assert self.store is not None  # validate() refused save without a store
        assert frame is not None  # saving always takes the full-colour path
        saved_name = self.store.save(frame, Record(request.protocol, result))
        saved = time.perf_counter_ns()
        timings = replace(timings, save=_ms(detected, saved), total=_ms(start, saved))
        return replace(result, timings=timings, saved_image=saved_name)
