"""One client interface, three transports: REST, gRPC unary and gRPC stream.

Every transport is measured the same way: the clock starts just before the request is
built and sent, and stops once the response is fully parsed into the core
``DetectionResult``. ``parse_ms`` is the part after the last byte arrived: JSON or
protobuf decoding plus conversion (gRPC calls return raw bytes so that protobuf decoding
happens on this clock too, as JSON decoding does). Byte counts are application
payloads: the HTTP body, or the serialized protobuf message.

TLS: REST follows the URL's scheme; gRPC uses a secure channel when asked to (see
``make_transport`` for the rule). ``ca_file`` names the PEM certificates to trust instead
of the system's store (a self-signed service certificate, say). Either way the cost is
paid once, when a transport (or a REST connection) is made, never per request.
"""

from __future__ import annotations

import http.client
import json
import queue
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlencode, urlsplit

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from facewire.messages import FRAME_SIZE, Box, Crop, DetectionResult, Model, Size, Timings
from facewire.oip.v2 import grpc_predict_v2_pb2 as oip_pb
from facewire.settings import MiB, Settings
from facewire.v1 import face_detection_pb2 as pb
from grpc_service.converters import result_to_core
from rest_service.schemas import DetectResponse, to_core

ProtocolName = Literal["rest", "grpc", "grpc-stream", "rest-v2", "grpc-v2"]
#: facewire's own APIs: what the GUI shows and the benchmark runs by default.
PROTOCOLS: tuple[ProtocolName, ...] = ("rest", "grpc", "grpc-stream")
#: Every protocol the benchmark can run, the Open Inference Protocol (v2) ones included.
ALL_PROTOCOLS: tuple[ProtocolName, ...] = (*PROTOCOLS, "rest-v2", "grpc-v2")
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

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        token: str | None = None,
        ca_file: Path | str | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = url.scheme == "https"
        # One context for every connection (http.client would load the trust store anew
        # for each); ca_file only matters for https.
        self._ssl = _ssl_context(ca_file) if self._https else None
        self._host = url.hostname
        self._port = url.port
        self._path = url.path.rstrip("/") + "/v1/detect"
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers = {"Content-Type": "image/jpeg", **self._auth}

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Readable while idle means the server closed it (uvicorn drops idle
            # keep-alive connections after 5 s): reconnect rather than fail the call.
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:
                self.close()
        if self._connection is None:
            if self._ssl is not None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=min(self._timeout, 2.0), context=self._ssl
                )
            else:
                connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=min(self._timeout, 2.0)
                )
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
        response, body = self._post(f"{self._path}?{query}", image, self._headers)
        received = time.perf_counter_ns()
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

    def _post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request on the kept-alive connection; the connection is dropped on any
        failure and when the server says it will close it."""
        try:
            connection = self._connect()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            answer = response.read()
        except TimeoutError:
            self.close()
            raise TransportError("timeout", "no answer in time") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError("unreachable", _first_line(exc) or type(exc).__name__) from None
        if response.will_close:
            self.close()
        return response, answer

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """Checks the server's certificate and name against ``ca_file`` only when given, else
    against the system's trust store; a ValueError when ``ca_file`` holds no certificates."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use {ca_file} as certificates to trust: {exc}") from None


def _read_ca_file(ca_file: Path | str) -> bytes:
    """The PEM certificates in ``ca_file``, checked as _ssl_context checks them (grpc would
    take any bytes, and only fail every handshake)."""
    try:
        pem = Path(ca_file).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot use {ca_file} as certificates to trust: {exc}") from None
    _ssl_context(ca_file)
    return pem


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
    request and decoding the answer then run on our clock, as they do for REST. The
    channel is a TLS one when ``tls`` is true or ``ca_file`` is given (trusting
    ``ca_file`` only, else the system's trust store), else plaintext.
    """

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        token: str | None = None,
        *,
        tls: bool = False,
        ca_file: Path | str | None = None,
    ) -> None:
        if tls or ca_file is not None:
            roots = _read_ca_file(ca_file) if ca_file is not None else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.secure_channel(target, credentials, options=_GRPC_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(target, options=_GRPC_OPTIONS)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._timeout = timeout
        self._bind()

    def _bind(self) -> None:
        """Make this transport's callables (and state) on ``self._channel``."""

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

    def _bind(self) -> None:
        self._detect: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            _DETECT
        )

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        request = _request(image, model, save, frame_id)
        try:
            raw = self._detect(request, timeout=self._timeout, metadata=self._metadata)
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

    def _bind(self) -> None:
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

            call = self._stream(requests(), metadata=self._metadata)
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


class RestV2Transport(RestTransport):
    """POST /v2/models/<model>/infer with Triton's binary tensor data extension, both
    ways: the JSON header, then IMAGE as one length-prefixed BYTES element."""

    name: ProtocolName = "rest-v2"

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        header, body = _v2_rest_request(image, save, frame_id)
        headers = {"Inference-Header-Content-Length": str(len(header)), **self._auth}
        path = f"{self._path.removesuffix('/v1/detect')}/v2/models/{_V2_MODELS[model]}/infer"
        response, answer = self._post(path, header + body, headers)
        received = time.perf_counter_ns()
        if response.status != 200:
            detail = _v2_error(answer) or response.reason
            raise TransportError("rejected", f"HTTP {response.status}: {detail}")
        length = response.getheader("Inference-Header-Content-Length")
        try:
            result = _v2_rest_result(
                answer, int(length) if length else len(answer), model, frame_id
            )
        except (ValueError, KeyError, TypeError):
            raise TransportError("protocol", "the reply is not an inference answer") from None
        end = time.perf_counter_ns()
        return Reply(result, (end - start) / 1e6, len(header) + len(body), len(answer),
                     (end - received) / 1e6)  # fmt: skip


#: facewire's model names → the Open Inference Protocol's.
_V2_MODELS = {"haar": "face_detector", "decode": "decode", "echo": "echo"}


def _v2_rest_request(image: bytes, save: bool, frame_id: str) -> tuple[bytes, bytes]:
    body = len(image).to_bytes(4, "little") + image
    inputs: list[dict[str, object]] = [
        {"name": "IMAGE", "datatype": "BYTES", "shape": [1],
         "parameters": {"binary_data_size": len(body)}},
    ]  # fmt: skip
    if save:
        inputs.append({"name": "SAVE", "datatype": "BOOL", "shape": [1], "data": [True]})
    document = {"id": frame_id, "inputs": inputs, "parameters": {"binary_data_output": True}}
    return json.dumps(document, separators=(",", ":")).encode(), body


def _v2_error(answer: bytes) -> str | None:
    try:
        error = json.loads(answer).get("error")
    except (ValueError, AttributeError):
        return None
    return str(error) if error else None


def _v2_rest_result(
    answer: bytes, header_length: int, model: str, frame_id: str
) -> DetectionResult:
    document = json.loads(answer[:header_length])
    values: dict[str, np.ndarray] = {}
    pos = header_length
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        dtype = "<i4" if output["datatype"] == "INT32" else "<f4"
        if size is None:
            data = np.array(output["data"], dtype)
        else:
            data = np.frombuffer(answer, dtype, count=size // 4, offset=pos)
            pos += size
        values[output["name"]] = data.reshape(output["shape"])
    queue = float(document.get("parameters", {}).get("queue_ms", 0.0))
    saved = document.get("parameters", {}).get("saved_image")
    return _v2_result(values, model, frame_id, queue, saved)


def _v2_result(
    values: dict[str, np.ndarray], model: str, frame_id: str, queue: float, saved: str | None
) -> DetectionResult:
    """The core result from the v2 outputs (the frame is always 720×720 when decoded)."""
    boxes = tuple(Box(*(int(v) for v in row)) for row in values["BOXES"].reshape(-1, 4))
    crop = Crop(*(int(v) for v in values["CROP"]))
    decode, preprocess, detect, save_ms, total = (float(v) for v in values["TIMINGS_MS"])
    decoded = crop.size > 0
    return DetectionResult(
        frame_id=frame_id,
        model=Model.parse(model),
        boxes=boxes,
        frame=Size(FRAME_SIZE, FRAME_SIZE) if decoded else Size(0, 0),
        crop=crop,
        image=Size(0, 0),  # the protocol's outputs do not carry it
        timings=Timings(decode, preprocess, detect, save_ms, total, queue),
        saved_image=saved,
    )


class GrpcV2Transport(_GrpcChannel):
    """Unary ``inference.GRPCInferenceService/ModelInfer`` calls, IMAGE in
    ``raw_input_contents``."""

    name: ProtocolName = "grpc-v2"

    def _bind(self) -> None:
        self._infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer"
        )

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        message = oip_pb.ModelInferRequest(model_name=_V2_MODELS[model], id=frame_id)
        message.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
        message.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
        if save:
            message.inputs.add(name="SAVE", datatype="BOOL", shape=[1])
            message.raw_input_contents.append(b"\x01")
        request = message.SerializeToString()
        try:
            raw = self._infer(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise _grpc_error(error) from None
        received = time.perf_counter_ns()
        try:
            answer = oip_pb.ModelInferResponse.FromString(raw)
            values = {
                o.name: np.frombuffer(data, "<i4" if o.datatype == "INT32" else "<f4").reshape(
                    o.shape
                )
                for o, data in zip(answer.outputs, answer.raw_output_contents, strict=True)
            }
            params = answer.parameters
            saved = params["saved_image"].string_param if "saved_image" in params else None
            queue = params["queue_ms"].double_param if "queue_ms" in params else 0.0
            result = _v2_result(values, model, frame_id, queue, saved)
        except (DecodeError, ValueError, KeyError):
            raise TransportError("protocol", "the reply is not an inference answer") from None
        end = time.perf_counter_ns()
        return Reply(result, (end - start) / 1e6, len(request), len(raw), (end - received) / 1e6)


def make_transport(
    protocol: ProtocolName,
    rest_url: str,
    grpc_target: str,
    token: str | None = None,
    ca_file: Path | str | None = None,
) -> Transport:
    """A transport; ``token`` defaults to FACEWIRE_AUTH_TOKEN, as the services read it.

    TLS: REST uses it when ``rest_url`` is https://; gRPC when ``rest_url`` is https://
    or a CA file is set (both services speak TLS or neither does). ``ca_file`` defaults
    to FACEWIRE_TLS_CA_FILE; when set, both trust it (only it) instead of the system's
    trust store.
    """
    if token is None or ca_file is None:
        settings = Settings()
        if token is None:
            secret = settings.auth_token
            token = secret.get_secret_value() if secret is not None else None
        if ca_file is None:
            ca_file = settings.tls_ca_file
    if protocol == "rest":
        return RestTransport(rest_url, token=token, ca_file=ca_file)
    if protocol == "rest-v2":
        return RestV2Transport(rest_url, token=token, ca_file=ca_file)
    tls = urlsplit(rest_url).scheme == "https" or ca_file is not None
    if protocol == "grpc":
        return GrpcTransport(grpc_target, token=token, tls=tls, ca_file=ca_file)
    if protocol == "grpc-v2":
        return GrpcV2Transport(grpc_target, token=token, tls=tls, ca_file=ca_file)
    return GrpcStreamTransport(grpc_target, token=token, tls=tls, ca_file=ca_file)
