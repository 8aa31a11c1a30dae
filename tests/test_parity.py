"""Section 5: for the same bytes and options, every protocol gives the same answer."""

from __future__ import annotations

import httpx
import pytest

from facewire.messages import DetectionResult
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from facewire.wire.v1_json import DetectResponse, json_to_result
from facewire.wire.v1_proto import result_to_core
from tests import images
from tests.conftest import Fixture


def geometry(result: DetectionResult) -> tuple[object, ...]:
    return (result.boxes, result.crop, result.frame, result.image, result.model)


@pytest.mark.parametrize("model", ["haar", "decode", "echo"])
@pytest.mark.parametrize("which", ["face", "noface", "portrait-png", "tiny"])
def test_rest_grpc_and_stream_agree(
    http: httpx.Client,
    stub: pb_grpc.FaceDetectionStub,
    face: Fixture,
    noface: Fixture,
    which: str,
    model: str,
) -> None:
    data = {
        "face": lambda: face.data,
        "noface": lambda: noface.data,
        # Portrait orientation and another format: the crop moves to y.
        "portrait-png": lambda: images.encode(images.decode(face.data).transpose(1, 0, 2), ".png"),
        "tiny": lambda: images.solid_jpeg(16, 16),
    }[which]()
    rest = json_to_result(
        DetectResponse.model_validate(
            http.post("/v1/detect", params={"model": model}, content=data).json()
        )
    )
    request = pb.DetectRequest(image=data, model=model)
    unary = result_to_core(stub.Detect(request, timeout=30))
    (streamed_pb,) = list(stub.DetectStream(iter([request]), timeout=30))
    streamed = result_to_core(streamed_pb)
    assert geometry(rest) == geometry(unary) == geometry(streamed)
    if which == "face" and model == "haar":
        assert len(rest.boxes) == 1
