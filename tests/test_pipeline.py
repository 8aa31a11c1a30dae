"""The core pipeline on real images, no transport."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.detector import FaceDetector
from facewire.errors import CorruptImage, ImageTooLarge, InvalidInput, LimitExceeded
from facewire.messages import DetectionRequest, Model
from facewire.pipeline import Pipeline, centre_crop, to_frame_boxes
from facewire.settings import Settings
from facewire.storage import FrameStore
from tests import images
from tests.cases import BadCase, assert_clean_message, bad_case_ids, bad_cases
from tests.conftest import Fixture, assert_face_near

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    settings = Settings()
    store = FrameStore(tmp_path_factory.mktemp("pipeline-store"))
    return Pipeline(settings, FaceDetector(), store)


def test_face_fixture_box_is_where_the_face_was_placed(pipeline: Pipeline, face: Fixture) -> None:
    result = pipeline.run(DetectionRequest(face.data))
    assert len(result.boxes) == 1
    assert_face_near(dataclasses.asdict(result.boxes[0]), face.faces[0])
    assert (result.crop.x, result.crop.y, result.crop.size) == (280, 0, 720)
    assert (result.image.width, result.image.height) == (1280, 720)
    assert (result.frame.width, result.frame.height) == (720, 720)


def test_noface_fixture_has_no_boxes(pipeline: Pipeline, noface: Fixture) -> None:
    result = pipeline.run(DetectionRequest(noface.data))
    assert result.boxes == ()


def test_timings_cover_every_stage(pipeline: Pipeline, face: Fixture) -> None:
    t = pipeline.run(DetectionRequest(face.data)).timings
    assert t.decode > 0
    assert t.preprocess > 0
    assert t.detect > 0
    assert t.save == 0
    # Stages tile the total exactly (same nanosecond stamps), up to float rounding.
    assert t.total == pytest.approx(t.decode + t.preprocess + t.detect, abs=1e-6)


def test_decode_model_stops_before_detection(pipeline: Pipeline, face: Fixture) -> None:
    result = pipeline.run(DetectionRequest(face.data, model=Model.DECODE))
    assert result.boxes == ()
    assert result.image.width == 1280
    assert result.crop.x == 280
    assert result.timings.decode > 0


def test_echo_model_does_not_decode(pipeline: Pipeline) -> None:
    result = pipeline.run(DetectionRequest(b"\x00not even an image", model=Model.ECHO))
    assert result.boxes == ()
    assert result.image.width == 0
    assert result.timings.total == 0


@pytest.mark.parametrize(
    ("width", "height", "crop"),
    [
        (1280, 720, (280, 0, 720)),
        (720, 1280, (0, 280, 720)),
        (1000, 800, (100, 0, 800)),
        (640, 480, (80, 0, 480)),
        (721, 720, (0, 0, 720)),
    ],
)
def test_centre_crop_geometry(width: int, height: int, crop: tuple[int, int, int]) -> None:
    image = np.zeros((height, width, 3), np.uint8)
    frame, got = centre_crop(image)
    assert (got.x, got.y, got.size) == crop
    assert frame.shape == (720, 720, 3)


def test_centre_crop_takes_the_centre_pixels() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, 280:1000] = 255  # exactly the centre square is white
    frame, _ = centre_crop(image)
    assert frame.min() == 255


def test_boxes_are_rescaled_rounded_and_clipped() -> None:
    boxes = to_frame_boxes([(10, 20, 30, 31), (290, 295, 20, 20)])
    assert dataclasses.astuple(boxes[0]) == (24, 48, 72, 74)  # x2.4, 74.4 rounds to 74
    assert dataclasses.astuple(boxes[1]) == (696, 708, 24, 12)  # clipped to the frame


def test_fractional_boxes_stay_square() -> None:
    # A face from the detector is an average of square hits: its size is rounded once,
    # for both sides (72.45 -> 72), not as the difference of two rounded edges.
    (box,) = to_frame_boxes([(10.1875, 20.0, 30.1875, 30.1875)])
    assert dataclasses.astuple(box) == (24, 48, 72, 72)


@pytest.mark.parametrize("convert", ["png", "webp-lossless", "bmp", "gray-png", "rgba-png"])
def test_other_formats_give_the_same_answer(
    pipeline: Pipeline, face: Fixture, convert: str
) -> None:
    pixels = images.decode(face.data)
    data = {
        "png": lambda: images.encode(pixels, ".png"),
        "webp-lossless": lambda: images.encode(pixels, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
        "bmp": lambda: images.encode(pixels, ".bmp"),
        "gray-png": lambda: images.encode(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), ".png"),
        "rgba-png": lambda: images.encode(cv2.cvtColor(pixels, cv2.COLOR_BGR2BGRA), ".png"),
    }[convert]()
    # Every decoder, on the colour path: lossless copies must give the very same boxes.
    colour = Pipeline(Settings(decode_mode="colour"), pipeline.detector, None)
    reference = colour.run(DetectionRequest(face.data))
    for result in (colour.run(DetectionRequest(data)), pipeline.run(DetectionRequest(data))):
        assert result.crop == reference.crop
        assert result.image == reference.image
        assert len(result.boxes) == 1
        assert_face_near(dataclasses.asdict(result.boxes[0]), face.faces[0])
    if convert != "gray-png":
        assert colour.run(DetectionRequest(data)).boxes == reference.boxes


@pytest.mark.parametrize(("width", "height"), [(16, 16), (1, 1), (3, 200), (200, 1)])
def test_tiny_images_are_upscaled_and_handled(pipeline: Pipeline, width: int, height: int) -> None:
    result = pipeline.run(DetectionRequest(images.solid_jpeg(width, height)))
    side = min(width, height)
    assert result.boxes == ()
    assert (result.crop.size, result.image.width, result.image.height) == (side, width, height)


@pytest.mark.parametrize("case", bad_cases(), ids=bad_case_ids())
def test_bad_input_raises_a_client_error(pipeline: Pipeline, case: BadCase) -> None:
    expected = InvalidInput if case.kind == "invalid" else LimitExceeded
    with pytest.raises(expected) as caught:
        pipeline.run(case.core_request())
    assert case.says in caught.value.message
    assert_clean_message(caught.value.message)


def test_frame_id_must_be_printable(pipeline: Pipeline, face: Fixture) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        pipeline.run(DetectionRequest(face.data, frame_id="a\nb"))


def test_header_and_data_disagreeing_is_corrupt(pipeline: Pipeline) -> None:
    data = images.png_with_header_size(64, 64)  # claims 64x64, holds 16x16 data
    with pytest.raises(CorruptImage):
        pipeline.run(DetectionRequest(data))


def test_decompression_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    """A real 10000x10000 PNG (100 MB of pixels in ~100 KB) in a fresh process: refused,
    and the process's peak memory does not grow by anything like the pixel buffer."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(images.png_bomb(10_000, 10_000))
    script = f"""
import resource, pathlib
from facewire.detector import FaceDetector
from facewire.errors import ImageTooLarge
from facewire.messages import DetectionRequest
from facewire.pipeline import Pipeline
from facewire.settings import Settings
pipeline = Pipeline(Settings(), FaceDetector(), None)
data = pathlib.Path({str(bomb)!r}).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    pipeline.run(DetectionRequest(data))
except ImageTooLarge as exc:
    print("refused:", exc.message)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("grew_kib", after - before)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "refused: image too large: 10000×10000" in out
    grew_kib = int(out.split("grew_kib")[1])
    assert grew_kib < 20_000, out  # decoding would have needed ~100,000 KiB


def test_pixel_limit_is_configurable(face: Fixture) -> None:
    small = Pipeline(Settings(max_image_pixels=1280 * 720 - 1), FaceDetector(), None)
    with pytest.raises(ImageTooLarge):
        small.run(DetectionRequest(face.data))
    exact = Pipeline(Settings(max_image_pixels=1280 * 720), FaceDetector(), None)
    assert len(exact.run(DetectionRequest(face.data)).boxes) == 1


def test_detector_parameters_come_from_settings(face: Fixture) -> None:
    strict = FaceDetector(min_size=200)  # a 130 px face in the 720 frame is ~54 px at 300
    pipeline = Pipeline(Settings(), strict, None)
    assert pipeline.run(DetectionRequest(face.data)).boxes == ()


def test_save_without_storage_is_refused(face: Fixture) -> None:
    pipeline = Pipeline(Settings(), FaceDetector(), None)
    with pytest.raises(InvalidInput, match="no storage"):
        pipeline.run(DetectionRequest(face.data, save=True))


def test_data_after_the_end_of_a_jpeg_is_ignored(pipeline: Pipeline, face: Fixture) -> None:
    """Phones append videos or maker data after the EOI; even marker-like bytes there."""
    trailer = b"\x00" * 10 + b"\xff\xda" + b"\x00" * 100 + b"\xff\xd8"
    result = pipeline.run(DetectionRequest(face.data + trailer))
    assert len(result.boxes) == 1


def test_a_progressive_jpeg_with_normal_scans_is_fine(pipeline: Pipeline, face: Fixture) -> None:
    progressive = images.encode(images.decode(face.data), ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert progressive.count(b"\xff\xda") > 1
    assert len(pipeline.run(DetectionRequest(progressive)).boxes) == 1


async def _detect_many(plane: object, request: DetectionRequest, n: int) -> list[object]:
    import asyncio

    from facewire.dataplane import DataPlane

    assert isinstance(plane, DataPlane)
    tasks = [asyncio.ensure_future(plane.detect(request)) for _ in range(n)]
    await asyncio.sleep(0)  # let every task reach the executor queue
    assert plane.close(timeout=30) is True
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_close_drops_queued_jobs(face: Fixture) -> None:
    import asyncio

    from facewire.dataplane import DataPlane

    colour = Settings(decode_mode="colour")  # a full decode of 36 megapixels: slow enough
    plane = DataPlane(Pipeline(colour, FaceDetector(), None), threads=1)
    plane.start()
    outcomes = asyncio.run(_detect_many(plane, DetectionRequest(face.data), 8))
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    dropped = [o for o in outcomes if isinstance(o, asyncio.CancelledError)]
    assert len(done) + len(dropped) == 8
    assert len(done) <= 1  # at most the one on the single thread ran; the queue was dropped
    assert not plane.ready


def test_close_waits_for_a_running_job_only_as_long_as_asked() -> None:
    import asyncio
    import threading

    from facewire.dataplane import DataPlane
    from tests.servers import wait_for

    colour = Settings(decode_mode="colour")  # a full decode of 36 megapixels: slow enough
    plane = DataPlane(Pipeline(colour, FaceDetector(), None), threads=1)
    plane.start()
    rows = np.linspace(0, 255, 6000, dtype=np.uint8)
    big = images.encode(np.broadcast_to(rows[:, None, None], (6000, 6000, 3)), ".jpg")
    results: list[object] = []
    request = DetectionRequest(big, model=Model.DECODE)  # a 36-megapixel decode: slow enough
    worker = threading.Thread(target=lambda: results.append(asyncio.run(plane.detect(request))))
    worker.start()
    wait_for(lambda: plane.running == 1, what="the job to start")
    assert plane.close(timeout=0) is False  # still running: the caller may give up on it
    assert plane.close(timeout=60) is True
    worker.join(60)
    (result,) = results
    assert result.image.width == 6000  # type: ignore[attr-defined]
