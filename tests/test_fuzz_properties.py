"""Property-based fuzzing (hypothesis) of the pipeline and both adapters: random bytes,
mutated real images, mutated headers, random query values and random gRPC fields. The
only acceptable outcomes are an answer or a clean client error, never a 5xx, UNKNOWN or
INTERNAL, and the services go on answering."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from functools import cache

import cv2
import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facewire.detector import FaceDetector
from facewire.errors import FacewireError
from facewire.messages import DetectionRequest, Model
from facewire.pipeline import Pipeline
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests import images
from tests.conftest import FIXTURES

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
#: What bad input may get: 4xx (never 5xx), or the gRPC codes for client errors.
CLIENT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
}


@cache
def seeds() -> dict[str, bytes]:
    """Small real images of every accepted format, from the face fixture."""
    face = cv2.imread(str(FIXTURES / "face_1280x720.jpg"))
    small = cv2.resize(face, (96, 54), interpolation=cv2.INTER_AREA)
    return {ext: images.encode(small, ext) for ext in (".jpg", ".png", ".webp", ".bmp")}


@cache
def pipeline() -> Pipeline:
    return Pipeline(Settings(max_image_pixels=4_000_000), FaceDetector(), None)


def run_pipeline(data: bytes, model: Model = Model.HAAR) -> None:
    # The clean refusal every bad input must get; any other exception fails the test.
    with contextlib.suppress(FacewireError):
        pipeline().run(DetectionRequest(data, model=model))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real image with a few bytes flipped, cut, duplicated or inserted."""
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        if not data:
            break
    return bytes(data)


@pytest.mark.unit
@FUZZ
@given(st.binary(max_size=4096))
def test_pipeline_random_bytes(data: bytes) -> None:
    run_pipeline(data)


@pytest.mark.unit
@FUZZ
@given(mutated(), st.sampled_from(list(Model)))
def test_pipeline_mutated_images(data: bytes, model: Model) -> None:
    run_pipeline(data, model)


@pytest.mark.unit
@FUZZ
@given(
    width=st.integers(0, 65535),
    height=st.integers(0, 65535),
    components=st.integers(0, 255),
    fmt=st.sampled_from(["jpeg", "png"]),
)
def test_pipeline_mutated_headers(width: int, height: int, components: int, fmt: str) -> None:
    """Huge, zero or lying dimensions and impossible component counts in real files."""
    data = bytearray(seeds()[".jpg" if fmt == "jpeg" else ".png"])
    if fmt == "jpeg":
        sof = data.index(b"\xff\xc0")  # baseline frame header: precision, h, w, components
        struct.pack_into(">HHB", data, sof + 5, height, width, components)
    else:  # IHDR: width, height, bit depth, colour type (CRC left stale on purpose too)
        struct.pack_into(">IIBB", data, 16, width, height, components % 17, components % 7)
    run_pipeline(bytes(data))


@FUZZ
@given(
    model=st.text(max_size=20),
    save=st.text(max_size=10),
    frame_id=st.text(max_size=200),
    body=st.one_of(st.binary(max_size=512), mutated()),
)
def test_rest_random_query_values_and_bodies(
    rest_url: str, model: str, save: str, frame_id: str, body: bytes
) -> None:
    params = {"model": model, "save": save, "frame_id": frame_id}
    reply = httpx.post(f"{rest_url}/v1/detect", params=params, content=body, timeout=30)
    assert reply.status_code < 500, reply.text
    assert reply.json()  # always a JSON answer: a result or {"detail": ...}


@FUZZ
@given(
    image=st.one_of(st.binary(max_size=512), mutated()),
    model=st.text(max_size=20),
    frame_id=st.text(max_size=200),
    save=st.booleans(),
    raw=st.binary(max_size=256),
)
def test_grpc_random_fields_and_raw_messages(
    grpc_target: str, image: bytes, model: str, frame_id: str, save: bool, raw: bytes
) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        message = pb.DetectRequest(image=image, model=model, frame_id=frame_id, save=save)
        typed = status_of(lambda: stub.Detect(message, timeout=30))
        untyped = status_of(
            lambda: channel.unary_unary("/facewire.v1.FaceDetection/Detect")(raw, timeout=30)
        )
    assert typed in CLIENT_CODES | {grpc.StatusCode.OK}
    assert untyped in CLIENT_CODES | {grpc.StatusCode.OK}


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def test_services_still_answer_after_the_fuzzing(rest_url: str, grpc_target: str) -> None:
    face = (FIXTURES / "face_1280x720.jpg").read_bytes()
    assert len(httpx.post(f"{rest_url}/v1/detect", content=face, timeout=30).json()["boxes"]) == 1
    with grpc.insecure_channel(grpc_target) as channel:
        reply = pb_grpc.FaceDetectionStub(channel).Detect(pb.DetectRequest(image=face))
    assert len(reply.boxes) == 1
