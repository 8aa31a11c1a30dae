"""One client interface, three transports: REST, gRPC unary and gRPC stream.

Every transport is measured the same way: the clock starts just before the request is
built and sent, and stops once the response is fully parsed into the core
``DetectionResult``. ``parse_ms`` is the part after the last byte arrived: JSON or
protobuf decoding plus conversion (gRPC calls return raw bytes so that protobuf decoding
happens on this clock too, as JSON decoding does). Byte counts are application
payloads: the HTTP body, or the serialized protobuf message.
"""

from __future__ import annotations

import http.client
import json
import queue
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlencode, urlsplit

import grpc
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from facewire.messages import DetectionResult
from facewire.settings import MiB
from facewire.v1 import face_detection_pb2 as pb
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
    #: Decoding the answer, a part of latency_ms (the rest is building, sending, waiting).
    parse_ms: float = 0.0


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
    """POST /v1/detect with the raw JPEG body, on one kept-alive HTTP/1.1 connection.

    The standard library's ``http.client`` rather than httpx: on loopback httpx's own
    Python costs about 0.4 ms a request (docs/performance.md), which would be counted
    against REST. A connection that fails is dropped and the next call makes a new one.
    """

    name: ProtocolName = "rest"

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._path = url.path.rstrip("/") + "/v1/detect"
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Readable while idle means the server closed it (uvicorn drops idle
            # keep-alive connections after 5 s): reconnect rather than fail the call.
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:
                self.close()
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=min(self._timeout, 2.0))
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self._timeout)  # connecting is short; answers may not be
            self._connection = connection
        return self._connection

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        query = urlencode(
            {"model": model, "save": "true" if save else "false", "frame_id": frame_id}
        )
        start = time.perf_counter_ns()
        try:
            connection = self._connect()
            connection.request("POST", f"{self._path}?{query}", image, _REST_HEADERS)
            response = connection.getresponse()
            body = response.read()
        except TimeoutError:
            self.close()
            raise TransportError("timeout", "no answer in time") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError("unreachable", _first_line(exc) or type(exc).__name__) from None
        received = time.perf_counter_ns()
        if response.will_close:
            self.close()
        if response.status != 200:
            raise TransportError(
                "rejected", f"HTTP {response.status}: {_detail(body, response.reason)}"
            )
        try:
            result = to_core(DetectResponse.model_validate_json(body))
        except ValidationError:
            raise TransportError("protocol", "the reply is not a facewire answer") from None
        end = time.perf_counter_ns()
        return Reply(result, (end - start) / 1e6, len(image), len(body), (end - received) / 1e6)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


_REST_HEADERS = {"Content-Type": "image/jpeg"}


def _detail(body: bytes, reason: str) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else reason


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


def _request(image: bytes, model: str, save: bool, frame_id: str) -> bytes:
    message = pb.DetectRequest(image=image, model=model, save=save, frame_id=frame_id)
    return message.SerializeToString()


_DETECT = "/facewire.v1.FaceDetection/Detect"
_DETECT_STREAM = "/facewire.v1.FaceDetection/DetectStream"


class _GrpcChannel:
    """One channel, reused for every call; what both gRPC transports share.

    Calls carry raw bytes both ways (no serializers on the channel): building the
    request and decoding the answer then run on our clock, as they do for REST.
    """

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(target, options=_GRPC_OPTIONS)
        self._timeout = timeout

    @staticmethod
    def _parse(raw: bytes) -> pb.DetectResponse:
        try:
            return pb.DetectResponse.FromString(raw)
        except DecodeError:
            raise TransportError("protocol", "the reply is not a facewire answer") from None

    @staticmethod
    def _reply(request: bytes, raw: bytes, message: pb.DetectResponse, start_ns: int,
               received_ns: int) -> Reply:  # fmt: skip
        """Convert the answer, then stop the clock: parsing is part of what is measured."""
        result = result_to_core(message)
        end = time.perf_counter_ns()
        return Reply(
            result, (end - start_ns) / 1e6, len(request), len(raw), (end - received_ns) / 1e6
        )

    def close(self) -> None:
        self._channel.close()


class GrpcTransport(_GrpcChannel):
    """Unary ``Detect`` calls on one channel."""

    name: ProtocolName = "grpc"

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        super().__init__(target, timeout)
        self._detect: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            _DETECT
        )

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        request = _request(image, model, save, frame_id)
        try:
            raw = self._detect(request, timeout=self._timeout)
        except grpc.RpcError as error:
            raise _grpc_error(error) from None
        received = time.perf_counter_ns()
        return self._reply(request, raw, self._parse(raw), start, received)


class _Watchdog:
    """Calls ``expire`` when an armed deadline passes; one thread for a transport's life
    (a ``threading.Timer`` per request would start a thread inside the measured time)."""

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._deadline: float | None = None
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="stream-watchdog", daemon=True).start()

    def arm(self, seconds: float) -> None:
        with self._changed:
            self._deadline = time.monotonic() + seconds
            self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None  # no notify: the thread re-checks when it wakes anyway

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
                self._deadline = None
                self._expire()


_END = object()
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class GrpcStreamTransport(_GrpcChannel):
    """Frames on one long-lived ``DetectStream``; a broken stream is reopened on next use."""

    name: ProtocolName = "grpc-stream"

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        super().__init__(target, timeout)
        self._stream: grpc.StreamStreamMultiCallable[bytes, bytes] = self._channel.stream_stream(
            _DETECT_STREAM
        )
        self._watchdog = _Watchdog(self._cancel_call)
        self._outbox: queue.SimpleQueue[object] | None = None
        self._replies: Iterator[bytes] | None = None
        self._call: grpc.Call | None = None

    def _open(self) -> tuple[queue.SimpleQueue[object], Iterator[bytes]]:
        if self._outbox is None or self._replies is None:
            outbox: queue.SimpleQueue[object] = queue.SimpleQueue()

            def requests() -> Iterator[bytes]:
                while (item := outbox.get()) is not _END:
                    assert isinstance(item, bytes)
                    yield item

            call = self._stream(requests())
            self._outbox, self._replies, self._call = outbox, call, call
        return self._outbox, self._replies

    def _reset(self) -> None:
        if self._outbox is not None:
            self._outbox.put(_END)
        if self._call is not None:
            self._call.cancel()
        self._outbox = self._replies = self._call = None

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        outbox, replies = self._open()
        start = time.perf_counter_ns()
        request = _request(image, model, save, frame_id)
        # One stream has one deadline; a per-frame timeout cancels the stream instead.
        self._watchdog.arm(self._timeout)
        outbox.put(request)
        try:
            raw = next(replies)
        except grpc.RpcError as error:
            self._reset()
            raise _grpc_error(error) from None
        except StopIteration:
            self._reset()
            raise TransportError("protocol", "the server ended the stream") from None
        finally:
            self._watchdog.disarm()
        received = time.perf_counter_ns()
        message = self._parse(raw)
        if message.HasField("error"):
            code = _CODE_NAMES.get(message.error.code, "UNKNOWN")
            raise TransportError("rejected", f"{code}: {message.error.message}")
        return self._reply(request, raw, message, start, received)

    def _cancel_call(self) -> None:
        call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self._watchdog.close()
        self._reset()
        super().close()


def make_transport(protocol: ProtocolName, rest_url: str, grpc_target: str) -> Transport:
    if protocol == "rest":
        return RestTransport(rest_url)
    if protocol == "grpc":
        return GrpcTransport(grpc_target)
    return GrpcStreamTransport(grpc_target)
