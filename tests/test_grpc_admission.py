"""How the gRPC service admits uploads (grpc_service/admission.py), against a real server:
a message that never arrives is ended, unknown uploads hold only their share while an
established connection's frames go on, a call with no message is refused cleanly, and
streams are bounded per connection and in idle time."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import h2.events
import pytest

from client.attack.wire import H2Client, Target, grpc_headers
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.conftest import Fixture
from tests.servers import grpc_server


def settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(storage_dir=tmp_path, **changes)  # type: ignore[arg-type]


def half_sent(target: str) -> tuple[H2Client, int]:
    """A unary call whose message promises 1 MiB and sends 1 KiB of it, on a new
    connection."""
    host, port = target.rsplit(":", 1)
    address = Target("grpc", host, int(port), None)
    client = H2Client(address, timeout=30.0)
    stream = client.conn.get_next_available_stream_id()
    client.conn.send_headers(stream, grpc_headers(address))
    client.conn.send_data(stream, struct.pack(">BI", 0, 1 << 20) + b"\0" * 1024)
    client.flush()
    return client, stream


def grpc_status(client: H2Client, stream: int, timeout: float = 30.0) -> str | None:
    """The grpc-status the server ends ``stream`` with, or None by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not client.closed:
        client.sock.settimeout(0.1)
        try:
            data = client.sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        for event in client.conn.receive_data(data):
            if isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                headers = dict(event.headers)
                if event.stream_id == stream and "grpc-status" in headers:
                    return str(headers["grpc-status"])
        client.flush()
    return None


def detect(target: str, face: Fixture) -> pb.DetectResponse:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        return stub.Detect(pb.DetectRequest(image=face.data, model="echo"), timeout=30)


def test_a_message_that_never_arrives_is_ended_and_its_room_given_back(
    tmp_path: Path, face: Fixture
) -> None:
    with grpc_server(settings(tmp_path, body_timeout_s=1.0, upload_budget_wait_s=0)) as target:
        calls = [half_sent(target) for _ in range(3)]
        try:
            statuses = sorted(grpc_status(client, stream) for client, stream in calls)
        finally:
            for client, _ in calls:
                client.close()
        # Two were admitted (the large share holds two unknown messages) and ended when
        # their messages did not arrive in time; the third found no room, unread.
        assert statuses == ["4", "4", "8"], statuses  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
        assert detect(target, face).model == "echo"  # the room came back


def test_unknown_uploads_hold_their_share_while_an_established_connection_goes_on(
    tmp_path: Path, face: Fixture
) -> None:
    with (
        grpc_server(settings(tmp_path, upload_budget_wait_s=0)) as target,
        grpc.insecure_channel(target) as channel,
    ):
        stub = pb_grpc.FaceDetectionStub(channel)
        request = pb.DetectRequest(image=face.data, model="echo")
        stub.Detect(request, timeout=30)  # the connection's standing: one frame
        calls = [half_sent(target) for _ in range(3)]
        try:
            # One of the three unknown uploads finds the large share full: refused.
            refused = [grpc_status(client, stream, timeout=10) for client, stream in calls]
            assert refused.count("8") == 1, refused
            for _ in range(5):  # the camera's frames still get in, at once
                assert stub.Detect(request, timeout=30).model == "echo"
        finally:
            for client, _ in calls:
                client.close()


def test_a_unary_call_with_no_message_is_refused_cleanly(tmp_path: Path, face: Fixture) -> None:
    with grpc_server(settings(tmp_path)) as target:
        host, port = target.rsplit(":", 1)
        address = Target("grpc", host, int(port), None)
        client = H2Client(address, timeout=30.0)
        try:
            stream = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream, grpc_headers(address), end_stream=True)
            client.flush()
            assert grpc_status(client, stream) == "3"  # INVALID_ARGUMENT
        finally:
            client.close()
        assert detect(target, face).model == "echo"


def silent(until: threading.Event) -> Iterator[pb.DetectRequest]:
    until.wait(60)
    yield from ()


def test_an_idle_stream_is_ended(tmp_path: Path) -> None:
    done = threading.Event()
    with (
        grpc_server(settings(tmp_path, stream_idle_timeout_s=1.0)) as target,
        grpc.insecure_channel(target) as channel,
    ):
        stream = pb_grpc.FaceDetectionStub(channel).DetectStream(silent(done), timeout=30)
        try:
            with pytest.raises(grpc.RpcError) as ended:
                next(stream)
        finally:
            done.set()
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ended.value
        assert "no message on the stream" in (ended.value.details() or "")


def test_streams_per_connection_are_capped(tmp_path: Path, face: Fixture) -> None:
    done = threading.Event()
    with (
        grpc_server(settings(tmp_path, max_streams_per_connection=2)) as target,
        grpc.insecure_channel(target) as channel,
    ):
        stub = pb_grpc.FaceDetectionStub(channel)
        try:
            held = [stub.DetectStream(silent(done), timeout=30) for _ in range(2)]
            third = stub.DetectStream(silent(done), timeout=30)
            with pytest.raises(grpc.RpcError) as refused:
                next(third)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
            assert "on this connection" in (refused.value.details() or "")
            # Another connection (grpc would share this one between channels to the same
            # target unless told not to) still opens its own.
            own = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(target, options=own) as other:
                frames = iter([pb.DetectRequest(image=face.data, model="echo")])
                answers = list(pb_grpc.FaceDetectionStub(other).DetectStream(frames, timeout=30))
                assert len(answers) == 1
            for stream in held:
                stream.cancel()
        finally:
            done.set()
