"""The upload and pixel limits hold under concurrency, and so does the memory they imply.

Each service runs as a process with small limits (1 MiB uploads, 4 megapixels, two
pipeline threads, full-colour decoding: 3 bytes a pixel, the most a frame can cost).
Thirty-two requests at once mix uploads over the limit, decompression bombs (valid
PNGs of 20000×20000 zeros: 389 KB on the wire, 1.2 GB decoded), images just over the
pixel limit and images just under it (15 KB on the wire, 12 MB decoded). The refusals
are 413 / RESOURCE_EXHAUSTED with a message that says which limit, the others are
answered, and the process's peak resident memory stays under what the settings allow:

    threads × max_image_pixels × 3      decoded frames, one per pipeline thread
    + concurrency × read_limit_bytes    request bodies the transports may hold
    + 100 MiB                           everything else, generously

Measured on two shared cores: eight bombs at once did not move the peak at all
(VmHWM unchanged; resident +2 MiB REST, +9 MiB gRPC), so they were refused from
their header. The mix raised the peak by 60-65 MiB over the resident baseline (REST)
and 64 MiB (gRPC: 150-162 MiB before it refused uploads far over the limit from their
length prefix, unread), against a bound of 251 MiB.
"""

from __future__ import annotations

import gc
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.readiness import rest_ready
from facewire.settings import MiB, Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests import images
from tests.conftest import Fixture
from tests.servers import ServiceProcess, grpc_server, wait_for

LIMITS = Settings(max_upload_bytes=1 * MiB, max_image_pixels=4_000_000, threads=2)
CONCURRENCY = 32
BOMBS_ALONE = 8
MARGIN = 100 * MiB
#: What the settings allow the mixed load to hold at once, plus a generous margin.
PEAK_BOUND = (
    (LIMITS.threads or 1) * LIMITS.max_image_pixels * 3
    + CONCURRENCY * LIMITS.read_limit_bytes
    + MARGIN
)
BOMB = (20_000, 20_000)
Protocol = Literal["rest", "grpc"]
Kind = Literal["oversized", "bomb", "just_over", "just_under"]


@dataclass(frozen=True)
class Payloads:
    oversized: bytes  # 3 MiB of random bytes: over the upload limit, under the read limit
    bomb: bytes  # a valid PNG of 20000×20000 zeros
    just_over: bytes  # 2001×2000 zeros: 4,002,000 pixels
    just_under: bytes  # 1999×1999 zeros: 3,996,001 pixels

    def of(self, kind: Kind) -> bytes:
        return getattr(self, kind)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def payloads() -> Payloads:
    def zeros(width: int, height: int) -> bytes:
        return images.encode(np.zeros((height, width, 3), np.uint8), ".png")

    made = Payloads(
        os.urandom(3 * MiB), images.png_bomb(*BOMB), zeros(2001, 2000), zeros(1999, 1999)
    )
    assert len(made.bomb) < LIMITS.max_upload_bytes  # a bomb passes the upload limit
    assert len(made.just_under) < 64 * 1024
    return made


@dataclass(frozen=True)
class Answer:
    """A transport's answer, in common terms: ok, or the limit status and its message."""

    ok: bool
    status: str  # "200", "413", ... or the gRPC code's name
    message: str
    width: int = 0
    height: int = 0


def memory(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        key: int(re.search(rf"^{key}:\s+(\d+) kB$", status, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]
        for key in ("VmRSS", "VmHWM")
    }


def rest_send(base_url: str) -> Callable[[bytes], Answer]:
    def send(body: bytes) -> Answer:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            reply = client.post("/v1/detect", content=body)
        if reply.status_code != 200:
            return Answer(False, str(reply.status_code), str(reply.json().get("detail")))
        image = reply.json()["image"]
        return Answer(True, "200", "", image["width"], image["height"])

    return send


def grpc_send(channel: grpc.Channel) -> Callable[[bytes], Answer]:
    stub = pb_grpc.FaceDetectionStub(channel)

    def send(body: bytes) -> Answer:
        try:
            reply = stub.Detect(pb.DetectRequest(image=body), timeout=60)
        except grpc.RpcError as error:
            return Answer(False, error.code().name, str(error.details()))
        return Answer(True, "OK", "", reply.image.width, reply.image.height)

    return send


def all_at_once(send: Callable[[bytes], Answer], bodies: list[bytes]) -> list[Answer]:
    """Send every body from its own thread, all released together."""
    answers: list[Answer | BaseException | None] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def one(i: int) -> None:
        start.wait(timeout=30)
        try:
            answers[i] = send(bodies[i])
        except BaseException as exc:  # reported below, with the others
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a request hangs"
    failed = [a for a in answers if not isinstance(a, Answer)]
    assert failed == [], failed
    return [a for a in answers if isinstance(a, Answer)]


def check(kind: Kind, answer: Answer, protocol: Protocol) -> None:
    refused = "413" if protocol == "rest" else "RESOURCE_EXHAUSTED"
    if kind == "just_under":
        assert answer.ok, answer
        assert (answer.width, answer.height) == (1999, 1999)
        return
    assert not answer.ok, (kind, answer)
    assert answer.status == refused, (kind, answer)
    if kind == "oversized" and protocol == "grpc":
        # Far over the message limit: refused by grpc from the length prefix, unread.
        assert "larger than max" in answer.message, answer
        assert f"vs. {LIMITS.grpc_message_limit_bytes})" in answer.message, answer
    elif kind == "oversized":
        assert "upload too large" in answer.message, answer
        assert f"over the limit of {LIMITS.max_upload_bytes}" in answer.message, answer
    else:
        size = "20000×20000" if kind == "bomb" else "2001×2000"
        assert f"image too large: {size}" in answer.message, answer
        assert f"over the limit of {LIMITS.max_image_pixels}" in answer.message, answer


@pytest.fixture(params=["rest", "grpc"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Protocol, ServiceProcess, str]]:
    protocol: Protocol = request.param
    env = {
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
        "FACEWIRE_MAX_UPLOAD_BYTES": str(LIMITS.max_upload_bytes),
        "FACEWIRE_MAX_IMAGE_PIXELS": str(LIMITS.max_image_pixels),
        "FACEWIRE_THREADS": str(LIMITS.threads),
        "FACEWIRE_DECODE_MODE": "colour",  # 3 bytes a pixel, as the bound assumes
    }
    module = "rest_service" if protocol == "rest" else "grpc_service"
    with ServiceProcess(module, env) as process:
        yield protocol, process, process.address()
        assert process.stop() == 0, process.output
    assert "Traceback" not in process.output, process.output
    assert "ERROR" not in process.output, process.output


def test_limits_and_memory_hold_under_concurrent_abuse(
    service: tuple[Protocol, ServiceProcess, str], payloads: Payloads, face: Fixture
) -> None:
    protocol, process, address = service
    kinds: list[Kind] = ["oversized", "bomb", "just_over", "just_under"] * (CONCURRENCY // 4)
    with ExitStack() as stack:
        if protocol == "rest":
            base_url = f"http://{address}"
            wait_for(lambda: rest_ready(base_url), what="REST ready")
            send = rest_send(base_url)

            def healthy() -> bool:
                return httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200
        else:
            channel = stack.enter_context(grpc.insecure_channel(address))
            grpc.channel_ready_future(channel).result(timeout=30)
            send = grpc_send(channel)
            health = health_pb2_grpc.HealthStub(channel)

            def healthy() -> bool:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        # Warm every path once (a full decode, a refusal) before the baseline.
        assert send(face.data).ok
        check("just_under", send(payloads.just_under), protocol)
        check("just_over", send(payloads.just_over), protocol)
        before = memory(process.process.pid)

        # Bombs alone: refused from the header, so nothing like one decoded bomb.
        for answer in all_at_once(send, [payloads.bomb] * BOMBS_ALONE):
            check("bomb", answer, protocol)
        bombs = memory(process.process.pid)
        bombs_growth = bombs["VmHWM"] - before["VmRSS"]
        one_decoded_bomb = BOMB[0] * BOMB[1] * 3
        bombs_bound = BOMBS_ALONE * LIMITS.read_limit_bytes + 32 * MiB
        assert bombs_growth < bombs_bound < one_decoded_bomb / 4, (bombs_growth, before, bombs)

        # The mix, thirty-two at once.
        answers = all_at_once(send, [payloads.of(kind) for kind in kinds])
        for kind, answer in zip(kinds, answers, strict=True):
            check(kind, answer, protocol)
        after = memory(process.process.pid)
        growth = after["VmHWM"] - before["VmRSS"]
        print(
            f"{protocol}: before {before}, after bombs {bombs}, after mix {after}; "
            f"peak RSS growth {bombs_growth / MiB:.1f} MiB for {BOMBS_ALONE} "
            f"bombs, {growth / MiB:.1f} MiB for the mix (bound {PEAK_BOUND / MiB:.0f} MiB)"
        )
        assert growth < PEAK_BOUND, (growth, before, after)

        # Still healthy, and still detecting.
        assert healthy()
        assert send(face.data).ok


def test_a_refused_grpc_call_frees_its_request_when_it_ends(
    tmp_path: Path, payloads: Payloads
) -> None:
    """A refused call's request (the message and the image bytes it carries: twice the
    upload) must be freed as the call ends, not left to Python's cycle collector.

    Ending a call with ``context.abort`` leaves a reference cycle: grpc.aio keeps the
    AbortError on the call's state, and its traceback holds the servicer's frames, which
    hold the request. Under repeated rounds of 32 concurrent 3 MiB uploads (limit 1 MiB)
    that grew a gRPC service from 120 MiB to a plateau of about 870 MiB resident (REST:
    124 MiB). The servicers now set the status and return (``grpc_service.errors.refuse``).
    """
    calls = 8
    settings = LIMITS.model_copy(update={"storage_dir": tmp_path})
    with grpc_server(settings) as target, grpc.insecure_channel(target) as channel:
        # Raw bytes both ways: no DetectRequest is made on this side of the call.
        detect: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/facewire.v1.FaceDetection/Detect"
        )
        request = pb.DetectRequest(image=payloads.oversized).SerializeToString()
        gc.collect()
        gc.disable()  # only explicit collections from here on: what they find is cyclic
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what they find in gc.garbage, to look at
        try:
            for _ in range(calls):
                with pytest.raises(grpc.RpcError) as refused:
                    detect(request, timeout=30)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            del refused
            gc.collect()
            pinned = [o for o in gc.garbage if isinstance(o, pb.DetectRequest)]
            count, size = len(pinned), sum(message.ByteSize() for message in pinned)
            del pinned
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert count == 0, (
        f"{count} of {calls} refused requests ({size / MiB:.0f} MiB) were cyclic garbage"
    )


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_upload_budget_bounds_32_max_size_uploads_on_32_connections(
    protocol: Protocol, tmp_path: Path
) -> None:
    """The default settings: 32 uploads of exactly the upload limit (8 MiB), each on a
    connection of its own, all at once. Without the budget this raised the peak by
    about 250 MiB (REST) and 620 MiB (gRPC); with it the peak stays under 150 MiB above
    the resident baseline, and the requests it has no room for are refused unread (503
    / RESOURCE_EXHAUSTED). The others are answered (these bytes are no image: 400 /
    INVALID_ARGUMENT). A waiting gRPC call holds its stream window unread (2 MiB, sized
    for a 50 ms round trip); the budget bounds how many wait, so one bound serves both."""
    defaults = Settings()
    env = {"FACEWIRE_REST_PORT": "0", "FACEWIRE_GRPC_PORT": "0",
           "FACEWIRE_STORAGE_DIR": str(tmp_path)}  # fmt: skip
    upload = np.random.default_rng(7).bytes(defaults.max_upload_bytes)
    answered, refused_as = ("400", "503") if protocol == "rest" else (
        "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED")  # fmt: skip
    module = "rest_service" if protocol == "rest" else "grpc_service"
    with ServiceProcess(module, env) as process, ExitStack() as stack:
        address = process.address()
        if protocol == "rest":
            wait_for(lambda: rest_ready(f"http://{address}"), what="REST ready")
            senders = [rest_send(f"http://{address}")] * CONCURRENCY  # a connection per call
        else:
            channels = [stack.enter_context(grpc.insecure_channel(address))
                        for _ in range(CONCURRENCY)]  # fmt: skip
            for channel in channels:
                grpc.channel_ready_future(channel).result(timeout=30)
            senders = [grpc_send(channel) for channel in channels]
        assert senders[0](b"warm").status == answered
        before = memory(process.process.pid)
        answers: list[Answer] = [None] * CONCURRENCY  # type: ignore[list-item]
        start = threading.Barrier(CONCURRENCY)

        def one(i: int) -> None:
            start.wait(timeout=30)
            answers[i] = senders[i](upload)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        after = memory(process.process.pid)
        growth = after["VmHWM"] - before["VmRSS"]
        statuses = sorted({a.status for a in answers})
        print(f"{protocol} budget: peak growth {growth / MiB:.0f} MiB; answers {statuses}")
        assert growth < 150 * MiB, (growth / MiB, before, after)
        assert set(statuses) <= {answered, refused_as}, answers
        refused = [a for a in answers if a.status == refused_as]
        assert all("the upload budget" in a.message for a in refused), refused
        assert answered in statuses  # the budget lets requests in, too
        assert process.stop() == 0, process.output
    assert "Traceback" not in process.output
