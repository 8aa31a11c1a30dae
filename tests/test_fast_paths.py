"""The pipeline's fast paths give the answers of the straightforward ones.

- a split detection (pieces of the scale pyramid on several threads) returns exactly
  the boxes of one ``detectMultiScale`` call, in its order, raw hits included;
- the gray and reduced decodes give the colour decode's crop and image size, and its
  boxes within 2 px on every test fixture;
- the detector's grouping is detectMultiScale's, to a fraction of a pixel.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from client.sources import SampleSource
from facewire.detector import GROUP_EPS, FaceDetector, Lend, group_hits, lend_from
from facewire.errors import CorruptImage
from facewire.imaging import decode_gray
from facewire.messages import Box, DetectionRequest, DetectionResult, Size
from facewire.pipeline import Pipeline, reduction_for
from facewire.settings import DecodeMode, Settings
from facewire.storage import FrameStore
from tests import images
from tests.conftest import Fixture

pytestmark = pytest.mark.unit

DETECTOR = FaceDetector()


@pytest.fixture(scope="module")
def lend() -> Iterator[Lend]:
    with ThreadPoolExecutor(3, thread_name_prefix="test-helper") as pool:
        yield lend_from(pool)


def _gray(data: bytes, size: tuple[int, int]) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _sample_jpeg(n: int) -> bytes:
    return images.encode(SampleSource().frame(n), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)


@pytest.fixture
def one_opencv_thread() -> Iterator[None]:
    """OpenCV's own threads add hits in whatever order they finish: one, as the services
    run it (FACEWIRE_OPENCV_THREADS), for an order that can be compared."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


@pytest.mark.parametrize("neighbours", [0, 5])
@pytest.mark.parametrize("spare", [1, 2, 3])
@pytest.mark.usefixtures("one_opencv_thread")
def test_split_detection_is_exactly_one_call(
    face: Fixture, lend: Lend, neighbours: int, spare: int
) -> None:
    detector = FaceDetector(min_neighbors=neighbours)
    for gray in (
        _gray(face.data, (300, 300)),
        _gray(_sample_jpeg(40), (300, 300)),
        _gray(face.data, (412, 233)),
    ):
        whole = detector.detect(gray)
        assert whole, "a test image without any hit proves nothing"
        # The same list, in the same order: one call's, whichever piece finished first.
        assert detector.detect(gray, lend, spare) == whole


@settings(max_examples=15, deadline=None)
@given(
    width=st.integers(20, 420),
    height=st.integers(20, 420),
    scale_factor=st.floats(1.02, 1.6),
    min_size=st.integers(1, 60),
)
def test_split_raw_hits_match_for_any_geometry(
    face: Fixture, width: int, height: int, scale_factor: float, min_size: int
) -> None:
    detector = FaceDetector(scale_factor=scale_factor, min_size=min_size, min_neighbors=0)
    gray = _gray(face.data, (width, height))
    with ThreadPoolExecutor(2) as pool:
        split = detector.detect(gray, lend_from(pool), 2)
    assert sorted(split) == sorted(detector.detect(gray))


def _detector_inputs(face: Fixture) -> list[np.ndarray]:
    return [_gray(face.data, (300, 300))] + [
        _gray(_sample_jpeg(n), (300, 300)) for n in range(0, 120, 12)
    ]


def test_grouping_is_detect_multiscales_to_a_fraction_of_a_pixel(face: Fixture) -> None:
    """The same faces as detectMultiScale's own grouping, which rounds each average to a
    whole pixel: ours keep the fraction, so they differ from its by at most half a pixel."""
    found = 0
    for gray in _detector_inputs(face):
        ours = sorted(DETECTOR.detect(gray))
        theirs = sorted(
            DETECTOR.classifier()
            .detectMultiScale(
                gray,
                scaleFactor=DETECTOR.scale_factor,
                minNeighbors=DETECTOR.min_neighbors,
                minSize=(DETECTOR.min_size, DETECTOR.min_size),
            )
            .tolist()
        )
        assert len(ours) == len(theirs), (ours, theirs)
        for mine, its in zip(ours, theirs, strict=True):
            assert max(abs(p - q) for p, q in zip(mine, its, strict=True)) <= 0.5, (mine, its)
        found += len(ours)
    assert found >= 5, "images without faces prove nothing"


def test_grouping_keeps_the_fraction_of_an_average() -> None:
    # Five hits at x = 10 and one at x = 11: the face is at x = 10 1/6, where
    # detectMultiScale says 10.
    hits = [(10, 20, 30, 30)] * 5 + [(11, 20, 30, 30)]
    ((x, y, w, h),) = group_hits(hits, 3)
    assert x == pytest.approx(10 + 1 / 6)
    assert (y, w, h) == (20, 30, 30)
    assert group_hits(hits, 6) == []  # a cluster needs more hits than ``neighbours``
    assert group_hits(hits, 0) == [(float(a), float(b), float(c), float(d)) for a, b, c, d in hits]


def _assert_opencv_faces(hits: list[tuple[int, int, int, int]], neighbours: int) -> None:
    """The faces of OpenCV's groupRectangles, each within its rounding (half a pixel)."""
    ours = sorted(group_hits(hits, neighbours))
    grouped, _ = cv2.groupRectangles(hits, neighbours, GROUP_EPS)
    theirs = sorted(tuple(int(v) for v in box) for box in grouped)
    assert len(ours) == len(theirs), (ours, theirs)
    for mine, its in zip(ours, theirs, strict=True):
        assert max(abs(p - q) for p, q in zip(mine, its, strict=True)) <= 0.5 + 1e-3


def test_grouping_drops_a_nested_face_exactly_as_opencv_does() -> None:
    # A weaker cluster inside a stronger one, right at the margin of OpenCV's nesting
    # test: rounding the averages differently (say, at a finer resolution) keeps it.
    big = [
        (125, 129, 101), (126, 136, 93), (126, 130, 97), (124, 137, 93), (123, 136, 96),
        (126, 135, 98), (128, 135, 92), (125, 137, 100), (121, 134, 91), (122, 132, 97),
    ]  # fmt: skip
    small = [
        (193, 138, 52), (192, 135, 48), (192, 142, 42), (194, 142, 47), (198, 141, 45),
        (196, 134, 44), (192, 137, 48), (196, 136, 43),
    ]  # fmt: skip
    hits = [(x, y, size, size) for x, y, size in big + small]
    assert len(group_hits(hits, 4)) == 1
    _assert_opencv_faces(hits, 4)


@settings(max_examples=200, deadline=None)
@given(
    hits=st.lists(
        st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(20, 90)),
        min_size=1,
        max_size=40,
    ),
    neighbours=st.integers(1, 6),
)
def test_grouping_finds_opencvs_faces_for_any_hits(
    hits: list[tuple[int, int, int]], neighbours: int
) -> None:
    _assert_opencv_faces([(x, y, size, size) for x, y, size in hits], neighbours)


def test_pieces_are_disjoint_ranges_costliest_first() -> None:
    detector = FaceDetector()
    pieces = detector.pieces(300, 300, threads=2)
    assert len(pieces) > 2
    ordered = sorted(pieces)
    assert ordered[0][0] == (detector.min_size, detector.min_size)
    assert ordered[-1][1] == (0, 0)  # open-ended, like one full call
    for (_, largest), (smallest, _) in itertools.pairwise(ordered):
        assert smallest[0] > largest[0]


def test_a_shut_down_helper_pool_leaves_the_work_to_the_caller(face: Fixture) -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    detector = FaceDetector()
    gray = _gray(face.data, (300, 300))
    assert detector.detect(gray, lend_from(pool), 1) == detector.detect(gray)


@pytest.mark.parametrize(
    ("fmt", "size", "expected"),
    [
        ("JPEG", Size(1280, 720), 2),
        ("JPEG", Size(720, 1280), 2),
        ("JPEG", Size(3840, 2160), 4),
        ("JPEG", Size(8000, 4000), 8),
        ("JPEG", Size(599, 2000), 1),
        ("PNG", Size(1280, 720), 1),
    ],
)
def test_reduction_keeps_the_detector_input_whole(fmt: str, size: Size, expected: int) -> None:
    assert reduction_for(fmt, size) == expected


def _run(mode: DecodeMode, data: bytes) -> DetectionResult:
    return Pipeline(Settings(decode_mode=mode), DETECTOR, None).run(DetectionRequest(data))


def _assert_like_colour(mode: DecodeMode, data: bytes, tolerance_px: int) -> int:
    """Same crop, image size and number of boxes as the colour path; boxes within
    ``tolerance_px`` on every edge. Returns the number of boxes."""
    fast, colour = _run(mode, data), _run("colour", data)
    assert fast.crop == colour.crop
    assert fast.image == colour.image
    got, want = (
        [_edges(b) for b in sorted(r.boxes, key=lambda b: (b.x, b.y))] for r in (fast, colour)
    )
    assert len(got) == len(want), (got, want)
    for a, b in zip(got, want, strict=True):
        assert max(abs(p - q) for p, q in zip(a, b, strict=True)) <= tolerance_px, (a, b)
    return len(want)


def _edges(box: Box) -> tuple[int, int, int, int]:
    return box.x, box.y, box.x + box.width, box.y + box.height


@pytest.mark.parametrize("mode", ["gray", "reduced"])
def test_fast_decodes_match_colour_within_2px_on_every_fixture(
    face: Fixture, noface: Fixture, mode: DecodeMode
) -> None:
    assert _assert_like_colour(mode, face.data, 2) == 1
    assert _assert_like_colour(mode, noface.data, 2) == 0


@pytest.mark.parametrize("mode", ["gray", "reduced"])
@pytest.mark.parametrize(("width", "height"), [(1281, 721), (721, 1281), (3840, 2160), (601, 601)])
def test_fast_decodes_keep_the_geometry_of_odd_sizes(
    face: Fixture, mode: DecodeMode, width: int, height: int
) -> None:
    pixels = cv2.resize(images.decode(face.data), (width, height), interpolation=cv2.INTER_AREA)
    data = images.encode(pixels, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
    fast, colour = _run(mode, data), _run("colour", data)
    assert (fast.crop, fast.image) == (colour.crop, colour.image)


@pytest.mark.parametrize("mode", ["gray", "reduced"])
def test_fast_decodes_follow_the_exif_orientation(face: Fixture, mode: DecodeMode) -> None:
    picture = Image.open(io.BytesIO(face.data))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    out = io.BytesIO()
    picture.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=90, exif=exif)
    fast, colour = _run(mode, out.getvalue()), _run("colour", out.getvalue())
    assert (fast.image.width, fast.image.height) == (1280, 720)
    assert fast.crop == colour.crop
    assert fast.boxes  # the face is found upright


def test_a_reduced_decode_still_checks_the_header_size(face: Fixture) -> None:
    with pytest.raises(CorruptImage, match="at 1/2 scale"):
        decode_gray(face.data, "JPEG", Size(1000, 720), 2)
    with pytest.raises(ValueError, match="only JPEG"):
        decode_gray(face.data, "PNG", Size(1280, 720), 2)


def test_saving_takes_the_full_colour_path(face: Fixture, tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(decode_mode="reduced"), DETECTOR, FrameStore(tmp_path))
    result = pipeline.run(DetectionRequest(face.data, save=True))
    assert result.saved_image
    saved = cv2.imread(str(tmp_path / result.saved_image))
    assert saved.shape == (720, 720, 3)
    assert len(result.boxes) == 1
