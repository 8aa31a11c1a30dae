"""The gRPC service, over a real HTTP/2 channel on an ephemeral port."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import h2.events
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from client.attack.wire import H2Client, Target
from facewire.settings import GRPC_ENVELOPE_BYTES, Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.cases import LIMIT, BadCase, assert_clean_message, bad_case_ids, bad_cases
from tests.conftest import Fixture, assert_face_near
from tests.servers import ServiceProcess

CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def box_dict(box: pb.Box) -> dict[str, int]:
    return {"x": box.x, "y": box.y, "width": box.width, "height": box.height}


def request_for(case: BadCase) -> pb.DetectRequest:
    return pb.DetectRequest(
        image=case.image, model=case.model, save=case.save, frame_id=case.frame_id
    )


def test_detect(stub: pb_grpc.FaceDetectionStub, face: Fixture) -> None:
    reply = stub.Detect(pb.DetectRequest(image=face.data, frame_id="f-1"), timeout=30)
    assert reply.protocol == "grpc"
    assert reply.model == "haar"
    assert reply.frame_id == "f-1"
    assert len(reply.boxes) == 1
    assert_face_near(box_dict(reply.boxes[0]), face.faces[0])
    assert (reply.frame.width, reply.frame.height) == (720, 720)
    assert (reply.crop.x, reply.crop.y, reply.crop.size) == (280, 0, 720)
    assert (reply.image.width, reply.image.height) == (1280, 720)
    assert reply.timings.total_ms > 0
    assert reply.timings.detect_ms > 0
    assert not reply.HasField("saved_image")
    assert not reply.HasField("error")


def test_detect_save(stub: pb_grpc.FaceDetectionStub, face: Fixture, settings: Settings) -> None:
    reply = stub.Detect(pb.DetectRequest(image=face.data, save=True), timeout=30)
    assert "_grpc_" in reply.saved_image
    assert (settings.storage_dir_for("grpc") / reply.saved_image).is_file()
    assert reply.timings.save_ms > 0


@pytest.mark.parametrize("case", bad_cases(), ids=bad_case_ids())
def test_detect_bad_input(stub: pb_grpc.FaceDetectionStub, case: BadCase, face: Fixture) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Detect(request_for(case), timeout=30)
    error = caught.value
    assert error.code() == CODES[case.kind], error.details()
    assert case.says in error.details()
    assert_clean_message(error.details())
    # The same channel (and HTTP/2 connection) serves the next call.
    assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1


def test_stream_bad_frames_get_error_responses_and_the_stream_goes_on(
    stub: pb_grpc.FaceDetectionStub, face: Fixture
) -> None:
    cases = bad_cases()
    requests = []
    for i, case in enumerate(cases):
        requests.append(pb.DetectRequest(image=face.data, frame_id=f"good-{i}"))
        bad = request_for(case)
        bad.frame_id = case.frame_id or case.id
        requests.append(bad)
    requests.append(pb.DetectRequest(image=face.data, frame_id="last"))
    replies = list(stub.DetectStream(iter(requests), timeout=120))
    assert len(replies) == len(requests)
    for request, reply in zip(requests, replies, strict=True):
        assert reply.frame_id == request.frame_id
        assert reply.protocol == "grpc-stream"
    for case, reply in zip(cases, replies[1::2], strict=True):
        assert reply.HasField("error"), case.id
        assert reply.error.code == CODES[case.kind].value[0], (case.id, reply.error)
        assert case.says in reply.error.message
        assert_clean_message(reply.error.message)
        assert len(reply.boxes) == 0
    for reply in replies[0::2]:
        assert not reply.HasField("error")
        assert len(reply.boxes) == 1


def test_stream_answers_100_frames_in_order(
    stub: pb_grpc.FaceDetectionStub, face: Fixture, noface: Fixture
) -> None:
    frames = [face.data if i % 3 else noface.data for i in range(100)]
    requests = (pb.DetectRequest(image=f, frame_id=str(i)) for i, f in enumerate(frames))
    replies = list(stub.DetectStream(requests, timeout=300))
    assert [r.frame_id for r in replies] == [str(i) for i in range(100)]
    assert [len(r.boxes) for r in replies] == [1 if i % 3 else 0 for i in range(100)]


def test_message_far_over_the_limit_is_refused_by_grpc_itself(
    stub: pb_grpc.FaceDetectionStub, face: Fixture
) -> None:
    huge = pb.DetectRequest(image=b"\x00" * (Settings().grpc_message_limit_bytes + 1))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Detect(huge, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1


def test_health_reports_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "facewire.v1.FaceDetection"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    assert "facewire.v1.FaceDetection" in services
    assert "grpc.health.v1.Health" in services
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("facewire.v1.FaceDetection")
    assert {m.name for m in service.methods} == {"Detect", "DetectStream"}
    assert service.methods_by_name["DetectStream"].client_streaming


def test_grpcurl_lists_describes_and_calls_through_reflection(
    grpc_target: str, face: Fixture
) -> None:
    """The README's grpcurl examples, with the real grpcurl binary."""
    import base64
    import json
    import subprocess
    import sys
    from pathlib import Path

    grpcurl = Path(sys.executable).parent / "grpcurl"
    listed = subprocess.run(
        [grpcurl, "-plaintext", grpc_target, "list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "facewire.v1.FaceDetection" in listed
    described = subprocess.run(
        [grpcurl, "-plaintext", grpc_target, "describe", "facewire.v1.FaceDetection"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "rpc DetectStream ( stream .facewire.v1.DetectRequest )" in described
    request = json.dumps({"image": base64.b64encode(face.data).decode(), "frame_id": "curl"})
    reply = subprocess.run(
        [grpcurl, "-plaintext", "-d", "@", grpc_target, "facewire.v1.FaceDetection/Detect"],
        input=request,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    answer = json.loads(reply)
    assert answer["frame_id"] == "curl"
    assert len(answer["boxes"]) == 1


def test_stream_goes_on_after_a_frame_over_the_limit(
    stub: pb_grpc.FaceDetectionStub, face: Fixture
) -> None:
    """An image over the upload limit but within the message's envelope is read and
    answered in the stream, which goes on."""
    over = LIMIT + GRPC_ENVELOPE_BYTES // 2
    big = pb.DetectRequest(image=b"\xff\xd8\xff" + b"\x00" * over, frame_id="big")
    requests = [pb.DetectRequest(image=face.data, frame_id="a"), big,
                pb.DetectRequest(image=face.data, frame_id="b")]  # fmt: skip
    replies = list(stub.DetectStream(iter(requests), timeout=60))
    assert [r.frame_id for r in replies] == ["a", "big", "b"]
    assert replies[1].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "upload too large" in replies[1].error.message
    assert len(replies[2].boxes) == 1


def test_a_message_over_the_envelope_ends_the_stream_unread(
    stub: pb_grpc.FaceDetectionStub, face: Fixture
) -> None:
    """grpc refuses a message larger than the limit from its length prefix, before
    buffering it: that ends the call (grpc cannot skip a message and go on)."""
    huge = pb.DetectRequest(image=b"\x00" * (LIMIT + 2 * GRPC_ENVELOPE_BYTES), frame_id="huge")
    requests = [pb.DetectRequest(image=face.data, frame_id="a"), huge]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.DetectStream(iter(requests), timeout=60))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in str(caught.value.details())
    assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1


def _raw_request(image: bytes, frame_id: bytes) -> bytes:
    """A DetectRequest on the wire, built by hand: protobuf would refuse invalid UTF-8."""

    def field(number: int, payload: bytes) -> bytes:
        size, varint = len(payload), b""
        while True:
            byte, size = size & 0x7F, size >> 7
            varint += bytes([byte | (0x80 if size else 0)])
            if not size:
                break
        return bytes([number << 3 | 2]) + varint + payload

    return field(1, image) + field(4, frame_id)


MALFORMED = {
    "invalid-utf8-frame-id": _raw_request(b"\xff\xd8\xff", b"\xff\xfe"),
    "garbage": b"\x0a\xff\xff\xff\xff\x0f",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_invalid_argument_not_unknown(
    channel: grpc.Channel, stub: pb_grpc.FaceDetectionStub, raw: bytes, face: Fixture
) -> None:
    detect = channel.unary_unary(
        "/facewire.v1.FaceDetection/Detect", response_deserializer=pb.DetectResponse.FromString
    )
    with pytest.raises(grpc.RpcError) as caught:
        detect(raw, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid facewire.v1.DetectRequest" in caught.value.details()
    stream = channel.stream_stream(
        "/facewire.v1.FaceDetection/DetectStream",
        response_deserializer=pb.DetectResponse.FromString,
    )
    good = pb.DetectRequest(image=face.data).SerializeToString()
    replies = list(stream(iter([good, raw, good]), timeout=60))
    assert len(replies) == 3
    assert replies[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(replies[0].boxes) == len(replies[2].boxes) == 1


def test_the_grpc_process_serves_its_metrics_over_http(tmp_path: Path, face: Fixture) -> None:
    """FACEWIRE_GRPC_METRICS_PORT: what the servicers count, for Prometheus to scrape;
    it stops with the service, which still exits 0."""
    env = {
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_GRPC_METRICS_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
        "FACEWIRE_THREADS": "1",
    }
    with ServiceProcess("grpc_service", env) as service:
        target = service.address()
        url = service.wait_for_output(r"metrics on (http://[\d.]+:\d+/metrics)").group(1)
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.FaceDetectionStub(channel)
            assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1
            with pytest.raises(grpc.RpcError):
                stub.Detect(pb.DetectRequest(image=b""), timeout=30)
            streamed = list(stub.DetectStream(iter([pb.DetectRequest(image=face.data)])))
            assert len(streamed) == 1
        reply = httpx.get(url, timeout=10)
        assert service.stop() == 0, service.output
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert 'facewire_requests_total{model="haar",protocol="grpc",status="ok"} 1.0' in text
    assert (
        'facewire_requests_total{model="haar",protocol="grpc",status="invalid_input"} 1.0' in text
    )
    assert 'facewire_requests_total{model="haar",protocol="grpc-stream",status="ok"} 1.0' in text
    assert 'facewire_stage_duration_seconds_count{protocol="grpc",stage="detect"} 1.0' in text
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)  # stopped with the service


def test_pings_are_answered_and_never_punished(grpc_target: str) -> None:
    """grpc's default answers a third ping without data with GOAWAY ENHANCE_YOUR_CALM,
    and then spins a thread for as long as the peer keeps the connection
    (docs/reliability.md, the PING flood); the service answers every ping instead."""
    host, port = grpc_target.rsplit(":", 1)
    client = H2Client(Target("grpc", host, int(port), None), timeout=10.0)
    acks = 0
    try:
        for n in range(20):
            client.conn.ping(n.to_bytes(8, "big"))
            client.flush()
            deadline = time.monotonic() + 10
            while acks <= n and time.monotonic() < deadline and not client.closed:
                client.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = client.sock.recv(65536)
                except TimeoutError:
                    break
                if not data:
                    client.closed = True
                    break
                for event in client.conn.receive_data(data):
                    if isinstance(event, h2.events.PingAckReceived):
                        acks += 1
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        client.goaway = getattr(event.error_code, "name", "")
                client.flush()
        assert (acks, client.goaway, client.closed) == (20, None, False)
    finally:
        client.close()
