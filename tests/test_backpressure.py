"""Back-pressure on gRPC: a client that sends on DetectStream and never reads its answers.

The servicer answers one frame at a time and reads the next frame only once the answer
to the previous one is written. A client that never reads lets its HTTP/2 receive
window fill with unread answers; the server's next write then waits, so it stops
reading frames, so its own receive window fills, so the client's sends stop. Nothing
queues without bound on the server: its memory holds a few frames whatever the client
tries to push.

How many frames get through before the stall depends on the windows at both ends.
Measured on grpcio 1.85.1, two shared cores:

* a client with a 1 KiB stream window and no BDP probing (as below): 26 to 40 frames
  of 1 MiB pulled from the generator before it stalled for good: the ones answered
  (their answers fill the client's window), one whose answer waits in the servicer's
  pending write, and the rest in the server's HTTP/2 receive buffers (its own window,
  grown by BDP probing, bounds them). The server's peak RSS grew by 13 to 40 MiB
  while the client tried to push 400 MiB; the bound asserted is 100 MiB;
* a client with grpc's default options: BDP probing grows its window to about 8 MB of
  unread answers, so the stall comes after about 53,000 echo frames with 128-character
  frame_ids (158-byte answers; server RSS +4 MB), and 400 frames of 1 MiB all go
  through without a stall (the server reads and drops each one; RSS +22 MB).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facewire.settings import MiB
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.conftest import Fixture
from tests.servers import ServiceProcess, wait_for

FRAMES = 400
FRAME_BYTES = 1 * MiB
#: Generous: the frames in gRPC's receive buffers (their window grows with BDP probing:
#: 13 to 40 MiB measured), allocator slack; what must never show is anything like the
#: 400 MiB the client pushes. A quarter of it, as for the frames that get through.
RSS_BOUND = FRAMES * FRAME_BYTES // 4
#: A client that has stopped reading: its stream window is full after about 1 KiB of
#: answers, and BDP probing (which would grow it) is off.
STUCK_CLIENT = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


def memory(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        key: int(re.search(rf"^{key}:\s+(\d+) kB$", status, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]
        for key in ("VmRSS", "VmHWM")
    }


def stream_answers(stub: pb_grpc.FaceDetectionStub, frames: list[pb.DetectRequest]) -> list[str]:
    """frame_ids of the answers to a short stream, or [] when it was refused as busy."""
    try:
        return [answer.frame_id for answer in stub.DetectStream(iter(frames), timeout=30)]
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return []


class StuckStream:
    """A DetectStream fed up to FRAMES echo frames of FRAME_BYTES by a generator, whose
    answers are never read."""

    def __init__(self, channel: grpc.Channel, payload: bytes) -> None:
        self.pulled = 0
        self.everything_sent = threading.Event()
        self.payload = payload
        self.call = pb_grpc.FaceDetectionStub(channel).DetectStream(self._frames())

    def _frames(self) -> Iterator[pb.DetectRequest]:
        for n in range(FRAMES):
            self.pulled += 1
            yield pb.DetectRequest(image=self.payload, model="echo", frame_id=f"stuck-{n}")
        self.everything_sent.set()

    def stalled(self) -> bool:
        """Unhindered, 400 MiB of echo frames cross loopback in well under a second
        (measured 0.4 s); a stalled stream never drains its generator."""
        return not self.everything_sent.wait(timeout=3)


def service_env(tmp_path: Path) -> dict[str, str]:
    return {
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
        "FACEWIRE_THREADS": "1",
        "FACEWIRE_MAX_STREAMS": "1",  # the stuck stream holds the only slot
    }


def test_a_client_that_never_reads_stalls_without_growing_server_memory(
    tmp_path: Path, face: Fixture
) -> None:
    payload = face.data + bytes(FRAME_BYTES - len(face.data))  # echo never decodes it
    with ServiceProcess("grpc_service", service_env(tmp_path)) as service:
        target = service.address()
        pid = service.process.pid
        with (
            grpc.insecure_channel(target, options=STUCK_CLIENT) as stuck_channel,
            grpc.insecure_channel(target) as other_channel,
        ):
            grpc.channel_ready_future(stuck_channel).result(timeout=30)
            grpc.channel_ready_future(other_channel).result(timeout=30)
            other = pb_grpc.FaceDetectionStub(other_channel)
            health = health_pb2_grpc.HealthStub(other_channel)
            # Warm every code path once (a stream included) before the baseline.
            assert len(other.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1
            warm = [pb.DetectRequest(image=payload, model="echo", frame_id="warm")]
            assert stream_answers(other, warm) == ["warm"]
            before = memory(pid)

            # (a) The sender stalls, well below the 400 frames it has (measured: about 30).
            stuck = StuckStream(stuck_channel, payload)
            assert stuck.stalled()
            stalled_at = stuck.pulled
            assert 0 < stalled_at < FRAMES // 4, stalled_at

            # (c) Meanwhile the service answers others, on another connection.
            reply = other.Detect(pb.DetectRequest(image=face.data, frame_id="other"), timeout=30)
            assert reply.frame_id == "other"
            assert len(reply.boxes) == 1
            check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            # The stuck stream is alive on the server (it holds the only stream slot)...
            with pytest.raises(grpc.RpcError) as busy:
                list(other.DetectStream(iter(warm), timeout=30))
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # ...and it made no progress while all that was served.
            assert stuck.pulled == stalled_at
            assert not stuck.everything_sent.is_set()

            # (b) The server held a few frames, never the 400 MiB the client tried to push.
            after = memory(pid)
            growth = after["VmHWM"] - before["VmRSS"]
            print(
                f"stalled after {stalled_at} frames; server peak RSS growth {growth / MiB:.1f} MiB"
                f" (before {before}, after {after})"
            )
            assert growth < RSS_BOUND, (growth, before, after)

            # (d) Cancelled, the stream frees its slot; the same connection streams again.
            stuck.call.cancel()
            assert stuck.call.code() == grpc.StatusCode.CANCELLED
            again = pb_grpc.FaceDetectionStub(stuck_channel)
            fresh = [
                pb.DetectRequest(image=payload, model="echo", frame_id="fresh-echo"),
                pb.DetectRequest(image=face.data, frame_id="fresh-haar"),
            ]
            answered = wait_for(
                lambda: stream_answers(again, fresh), what="the cancelled stream's slot to free"
            )
            assert answered == ["fresh-echo", "fresh-haar"]
            assert stuck.pulled == stalled_at  # the cancelled generator was never pulled again
            assert len(other.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1
        assert service.stop() == 0, service.output


def test_cancelling_a_stream_stalled_on_its_answers_logs_no_error(
    tmp_path: Path, face: Fixture
) -> None:
    """A client that cancels a stream while the server waits to write an answer (one that
    stopped reading, or ``GrpcStreamTransport``, whose per-frame timeout cancels the
    stream) does nothing wrong; the service must not log it as a server error.

    When the servicer yielded its answers, grpc.aio wrote them itself, and the pending
    write failing on a cancel was logged as "ERROR grpc._cython.cygrpc: ExecuteBatchError
    raised in core by servicer method [...DetectStream]" with a traceback (grpcio
    1.85.1), on every such cancel. The servicer now writes (``grpc_service.streams.send``).
    """
    payload = face.data + bytes(FRAME_BYTES - len(face.data))
    with ServiceProcess("grpc_service", service_env(tmp_path)) as service:
        target = service.address()
        with grpc.insecure_channel(target, options=STUCK_CLIENT) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stuck = StuckStream(channel, payload)
            assert stuck.stalled()  # the server is waiting to write an answer
            stuck.call.cancel()
            stub = pb_grpc.FaceDetectionStub(channel)
            echo = [pb.DetectRequest(image=payload, model="echo", frame_id="after")]
            answered = wait_for(lambda: stream_answers(stub, echo), what="the slot to free")
            assert answered == ["after"]
        assert service.stop() == 0, service.output
    logged = [line for line in service.lines if "ERROR" in line or "Traceback" in line]
    assert logged == [], "".join(logged)
