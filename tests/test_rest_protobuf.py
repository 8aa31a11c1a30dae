"""Protobuf over REST (rest_service/protobuf.py): /v1/detect reads a DetectRequest and
answers a DetectResponse, negotiated by Content-Type and Accept, with the same answer
as JSON and gRPC, and the same clean refusals of bad input."""

from __future__ import annotations

import http.client
import json

import pytest
from starlette.requests import Request

from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from facewire.wire.v1_proto import result_to_core
from rest_service.protobuf import answer_type
from tests.cases import BadCase, assert_clean_message, bad_case_ids, bad_cases
from tests.conftest import Fixture, assert_face_near

PROTOBUF = "application/x-protobuf"


def post(conn: http.client.HTTPConnection, body: bytes,
         headers: dict[str, str]) -> tuple[int, str, bytes]:  # fmt: skip
    conn.request("POST", "/v1/detect", body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.getheader("content-type") or "", response.read()


def message(image: bytes, **fields: object) -> bytes:
    return pb.DetectRequest(image=image, **fields).SerializeToString()  # type: ignore[arg-type]


def test_a_protobuf_request_gets_a_protobuf_answer(
    conn: http.client.HTTPConnection, face: Fixture
) -> None:
    body = message(face.data, model="haar", frame_id="pb-1")
    status, media, answer = post(conn, body, {"Content-Type": PROTOBUF, "Accept": PROTOBUF})
    assert (status, media) == (200, PROTOBUF), answer[:200]
    reply = pb.DetectResponse.FromString(answer)
    assert (reply.frame_id, reply.model, reply.protocol) == ("pb-1", "haar", "rest")
    (box,) = reply.boxes
    assert_face_near({"x": box.x, "y": box.y, "width": box.width, "height": box.height},
                     face.faces[0])  # fmt: skip


@pytest.mark.parametrize(
    ("content_type", "accept", "answered"),
    [
        (PROTOBUF, None, PROTOBUF),  # no Accept: the body's own encoding
        ("application/protobuf", "*/*", "application/protobuf"),
        (PROTOBUF, "application/json", "application/json"),
        (PROTOBUF, "application/json;q=0.5, application/x-protobuf", PROTOBUF),
        ("image/jpeg", PROTOBUF, PROTOBUF),  # a raw image, a protobuf answer
        ("image/jpeg", None, "application/json"),
    ],
)
def test_the_answer_is_negotiated(
    conn: http.client.HTTPConnection, face: Fixture,
    content_type: str, accept: str | None, answered: str,
) -> None:  # fmt: skip
    protobuf_body = content_type != "image/jpeg"
    body = message(face.data, model="echo") if protobuf_body else face.data
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    conn.request("POST", "/v1/detect", body=body, headers=headers)
    response = conn.getresponse()
    status, media, answer = response.status, response.getheader("content-type"), response.read()
    assert (status, media) == (200, answered), answer[:200]
    assert response.getheader("vary") == "Accept"  # a cache keys each encoding apart
    if answered == "application/json":
        assert json.loads(answer)["frame"] == {"width": 720, "height": 720}
    else:
        assert pb.DetectResponse.FromString(answer).frame.width == 720


def test_protobuf_json_and_grpc_give_the_same_answer(
    conn: http.client.HTTPConnection, stub: pb_grpc.FaceDetectionStub, face: Fixture
) -> None:
    request = pb.DetectRequest(image=face.data, model="haar")
    _, _, answer = post(conn, request.SerializeToString(), {"Content-Type": PROTOBUF})
    over_rest = result_to_core(pb.DetectResponse.FromString(answer))
    over_grpc = result_to_core(stub.Detect(request, timeout=30))
    geometry = ("boxes", "crop", "frame", "image", "model")
    assert [getattr(over_rest, g) for g in geometry] == [getattr(over_grpc, g) for g in geometry]


@pytest.mark.parametrize("case", bad_cases(), ids=bad_case_ids())
def test_bad_input_gets_a_clear_json_error_and_the_connection_serves_on(
    conn: http.client.HTTPConnection, case: BadCase, face: Fixture
) -> None:
    body = message(case.image, model=case.model, save=case.save, frame_id=case.frame_id)
    status, media, answer = post(conn, body, {"Content-Type": PROTOBUF, "Accept": PROTOBUF})
    assert status == (400 if case.kind == "invalid" else 413), answer[:300]
    assert media == "application/json"  # errors are the JSON error document
    detail = json.loads(answer)["detail"]
    assert case.says in detail
    assert_clean_message(detail)
    socket_before = conn.sock
    assert socket_before is not None, "the server closed the connection after the error"
    status, _, _ = post(conn, message(face.data), {"Content-Type": PROTOBUF})
    assert status == 200
    assert conn.sock is socket_before


@pytest.mark.parametrize("body", [b"\xff\xd8\xff\xe0 a JPEG's start", b"\x0a\xff\xff\xff\xff"])
def test_bytes_that_are_no_message_get_400(conn: http.client.HTTPConnection, body: bytes) -> None:
    status, media, answer = post(conn, body, {"Content-Type": PROTOBUF})
    assert (status, media) == (400, "application/json")
    assert "not a valid facewire.v1.DetectRequest" in json.loads(answer)["detail"]


def _request(accept: str | None) -> Request:
    headers = [(b"accept", accept.encode())] if accept is not None else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.unit
@pytest.mark.parametrize(
    ("accept", "sent", "answered"),
    [
        (None, None, None),
        (None, PROTOBUF, PROTOBUF),
        ("*/*", PROTOBUF, PROTOBUF),
        ("application/json", PROTOBUF, None),
        ("application/x-protobuf;q=0.4, application/json;q=0.6", None, None),
        ("application/json;q=0.6, application/protobuf", None, "application/protobuf"),
        ("application/x-protobuf;q=bogus", None, None),  # a malformed q never wins
        ("text/html", PROTOBUF, None),
    ],
)
def test_accept_negotiation(accept: str | None, sent: str | None, answered: str | None) -> None:
    assert answer_type(_request(accept), sent) == answered
