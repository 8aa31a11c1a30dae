"""One client interface, three transports: REST, gRPC unary and gRPC stream.

Every transport is measured the same way: the clock starts just before the request is
sent and stops once the response is fully parsed into the core ``DetectionResult``.
Byte counts are application payloads: the HTTP body, or the protobuf message.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import grpc
import httpx
from pydantic import ValidationError

from facewire.messages import DetectionResult
from facewire.settings import MiB
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from grpc_service.converters import result_to_core
from rest_service.schemas import DetectResponse, to_core

ProtocolName = Literal["rest", "grpc", "grpc-stream"]
PROTOCOLS: tuple[ProtocolName, ...] = ("rest", "grpc", "grpc-stream")
ErrorKind = Literal["unreachable", "timeout", "rejected", "protocol"]

_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 64 * MiB),
    ("grpc.max_receive_message_length", 64 * MiB),
    # Reconnect quickly when a restarted service comes back.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True, slots=True)
class Reply:
    result: DetectionResult
    latency_ms: float
    bytes_sent: int
    bytes_received: int


class TransportError(Exception):
    """A request that got no usable answer; ``kind`` says why, ``message`` says what."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Transport(Protocol):
    name: ProtocolName

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply: ...

    def close(self) -> None: ...


class RestTransport:
    """POST /v1/detect with the raw JPEG body, on one kept-alive HTTP/1.1 connection."""

    name: ProtocolName = "rest"

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers={"Content-Type": "image/jpeg"},
        )

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        params = {"model": model, "save": "true" if save else "false", "frame_id": frame_id}
        start = time.perf_counter_ns()
        try:
            response = self._client.post("/v1/detect", params=params, content=image)
        except httpx.TimeoutException as exc:
            raise TransportError("timeout", f"no answer in time ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransportError("unreachable", _first_line(exc) or type(exc).__name__) from None
        body = response.content
        if response.status_code != 200:
            raise TransportError("rejected", f"HTTP {response.status_code}: {_detail(response)}")
        try:
            result = to_core(DetectResponse.model_validate_json(body))
        except ValidationError:
            raise TransportError("protocol", "the reply is not a facewire answer") from None
        latency = (time.perf_counter_ns() - start) / 1e6
        return Reply(result, latency, len(image), len(body))

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else response.reason_phrase


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def _grpc_error(error: grpc.RpcError) -> TransportError:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return TransportError("unreachable", details)
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return TransportError("timeout", "no answer in time")
    name = code.name if code is not None else "UNKNOWN"
    return TransportError("rejected", f"{name}: {details}")


def _request(image: bytes, model: str, save: bool, frame_id: str) -> pb.DetectRequest:
    return pb.DetectRequest(image=image, model=model, save=save, frame_id=frame_id)


class _GrpcChannel:
    """One channel, reused for every call; what both gRPC transports share."""

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(target, options=_GRPC_OPTIONS)
        self._stub = pb_grpc.FaceDetectionStub(self._channel)
        self._timeout = timeout

    @staticmethod
    def _reply(request: pb.DetectRequest, message: pb.DetectResponse, start_ns: int) -> Reply:
        """Parse the answer, then stop the clock: parsing is part of what is measured."""
        result = result_to_core(message)
        latency = (time.perf_counter_ns() - start_ns) / 1e6
        return Reply(result, latency, request.ByteSize(), message.ByteSize())

    def close(self) -> None:
        self._channel.close()


class GrpcTransport(_GrpcChannel):
    """Unary ``Detect`` calls on one channel."""

    name: ProtocolName = "grpc"

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        request = _request(image, model, save, frame_id)
        start = time.perf_counter_ns()
        try:
            message = self._stub.Detect(request, timeout=self._timeout)
        except grpc.RpcError as error:
            raise _grpc_error(error) from None
        return self._reply(request, message, start)


_END = object()
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class GrpcStreamTransport(_GrpcChannel):
    """Frames on one long-lived ``DetectStream``; a broken stream is reopened on next use."""

    name: ProtocolName = "grpc-stream"

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        super().__init__(target, timeout)
        self._outbox: queue.SimpleQueue[object] | None = None
        self._replies: Iterator[pb.DetectResponse] | None = None
        self._call: grpc.Call | None = None

    def _open(self) -> tuple[queue.SimpleQueue[object], Iterator[pb.DetectResponse]]:
        if self._outbox is None or self._replies is None:
            outbox: queue.SimpleQueue[object] = queue.SimpleQueue()

            def requests() -> Iterator[pb.DetectRequest]:
                while (item := outbox.get()) is not _END:
                    assert isinstance(item, pb.DetectRequest)
                    yield item

            call = self._stub.DetectStream(requests())
            self._outbox, self._replies, self._call = outbox, call, call
        return self._outbox, self._replies

    def _reset(self) -> None:
        if self._outbox is not None:
            self._outbox.put(_END)
        if self._call is not None:
            self._call.cancel()
        self._outbox = self._replies = self._call = None

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        request = _request(image, model, save, frame_id)
        outbox, replies = self._open()
        # One stream has one deadline; a per-frame timeout cancels the stream instead.
        watchdog = threading.Timer(self._timeout, self._cancel_call)
        start = time.perf_counter_ns()
        outbox.put(request)
        watchdog.start()
        try:
            message = next(replies)
        except grpc.RpcError as error:
            self._reset()
            raise _grpc_error(error) from None
        except StopIteration:
            self._reset()
            raise TransportError("protocol", "the server ended the stream") from None
        finally:
            watchdog.cancel()
        if message.HasField("error"):
            code = _CODE_NAMES.get(message.error.code, "UNKNOWN")
            raise TransportError("rejected", f"{code}: {message.error.message}")
        return self._reply(request, message, start)

    def _cancel_call(self) -> None:
        call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self._reset()
        super().close()


def make_transport(protocol: ProtocolName, rest_url: str, grpc_target: str) -> Transport:
    if protocol == "rest":
        return RestTransport(rest_url)
    if protocol == "grpc":
        return GrpcTransport(grpc_target)
    return GrpcStreamTransport(grpc_target)
