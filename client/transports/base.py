"""What every transport shares: the reply, the error, the interface, TLS trust."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from facewire.errors import FacewireError
from facewire.messages import DetectionRequest, DetectionResult, Model

ProtocolName = Literal[
    "rest",
    "grpc",
    "grpc-stream",
    "rest-v2",
    "grpc-v2",
    "rest-multipart",
    "rest-v2-json",
    "rest-protobuf",
    "rest-ws",
    "rest-h2",
    "rest-h2-protobuf",
]
#: facewire's own APIs: what the GUI shows and the benchmark runs by default.
PROTOCOLS: tuple[ProtocolName, ...] = ("rest", "grpc", "grpc-stream")
#: Every API the services serve: the WebSocket stream and the Open Inference Protocol's
#: (v2) included.
ALL_PROTOCOLS: tuple[ProtocolName, ...] = (*PROTOCOLS, "rest-ws", "rest-v2", "grpc-v2")
#: The same REST APIs with other payload forms: the image as a multipart field, the v2
#: request as plain JSON (the image in base64) instead of binary tensor data, and
#: /v1/detect's request and answer as gRPC's protobuf messages.
PAYLOAD_FORMS: tuple[ProtocolName, ...] = ("rest-multipart", "rest-v2-json", "rest-protobuf")
#: facewire's REST API over HTTP/2 (raw body, and protobuf): these need the REST service
#: run on Granian (FACEWIRE_REST_SERVER=granian; see ``make_transport``).
HTTP2_PROTOCOLS: tuple[ProtocolName, ...] = ("rest-h2", "rest-h2-protobuf")
ErrorKind = Literal["unreachable", "timeout", "rejected", "protocol"]


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


def core_request(image: bytes, model: str, save: bool, frame_id: str) -> DetectionRequest:
    """The request as the core has it, for the transports whose wire form needs a known
    model (the Open Inference Protocol names it in its own words); an unknown model is
    refused here, as the service would."""
    try:
        return DetectionRequest(image, Model.parse(model), save, frame_id)
    except FacewireError as exc:
        raise TransportError("rejected", exc.message) from None


def ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """Checks the server's certificate and name against ``ca_file`` only when given, else
    against the system's trust store; a ValueError when ``ca_file`` holds no certificates."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use {ca_file} as certificates to trust: {exc}") from None


def read_ca_file(ca_file: Path | str) -> bytes:
    """The PEM certificates in ``ca_file``, checked as ssl_context checks them (grpc would
    take any bytes, and only fail every handshake)."""
    try:
        pem = Path(ca_file).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot use {ca_file} as certificates to trust: {exc}") from None
    ssl_context(ca_file)
    return pem


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""
