"""One gRPC channel, reused for every call: what the gRPC transports share.

Calls carry raw bytes both ways (no serializers on the channel): building the request
and decoding the answer then run on our clock, as they do for REST. The channel is a
TLS one when ``tls`` is true or ``ca_file`` is given (trusting ``ca_file`` only, else
the system's trust store), else plaintext.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError

from client.transports.base import Reply, TransportError, read_ca_file
from facewire.settings import MiB
from facewire.v1 import face_detection_pb2 as pb
from facewire.wire.v1_proto import result_to_core

OPTIONS = [
    ("grpc.max_send_message_length", 64 * MiB),
    ("grpc.max_receive_message_length", 64 * MiB),
    # Reconnect quickly when a restarted service comes back. Not min_reconnect_backoff_ms:
    # grpc core also takes it as the connect attempt's deadline (TCP, TLS and the HTTP/2
    # SETTINGS exchange), so at 200 ms no service 150 ms of round trip away was reachable.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


#: Calls spread over every address the target resolves to, one call to the next, rather
#: than all going to the first that answers (grpc's default policy, pick_first).
ROUND_ROBIN = ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))


def balanced_target(target: str) -> tuple[str, list[tuple[str, str]]]:
    """A target of several addresses (``host:port,host:port``, or a ``dns:///`` name,
    such as a Kubernetes headless Service) is balanced call by call (round_robin); a
    single address is left to grpc's default."""
    if "," in target and not target.startswith(("ipv4:", "ipv6:")):
        target = ("ipv6:" if target.startswith("[") else "ipv4:") + target
    if "," in target or target.startswith("dns:"):
        return target, [ROUND_ROBIN]
    return target, []


#: A channel that keeps its connections to itself. grpc shares connections between the
#: channels of a process (a global subchannel pool): a "new" channel to a target that
#: another channel is connected to rides that channel's connection, with no handshake.
OWN_CONNECTIONS = ("grpc.use_local_subchannel_pool", 1)


def open_channel(
    target: str, *, tls: bool = False, ca_file: Path | str | None = None, own: bool = False
) -> grpc.Channel:
    """``own``: its connections its own (``OWN_CONNECTIONS``), for a new connection."""
    target, balancing = balanced_target(target)
    options = [*OPTIONS, *balancing, *([OWN_CONNECTIONS] if own else [])]
    if tls or ca_file is not None:
        roots = read_ca_file(ca_file) if ca_file is not None else None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.secure_channel(target, credentials, options=options)
    return grpc.insecure_channel(target, options=options)


class GrpcChannel:
    """A transport's channel, its metadata (the token) and its per-call timeout. With
    ``new_connection``, a unary transport opens a channel for every call (inside the
    measured time: a new HTTP/2 connection, and its handshake) and closes it after."""

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        token: str | None = None,
        *,
        tls: bool = False,
        ca_file: Path | str | None = None,
        new_connection: bool = False,
    ) -> None:
        self._address = target, tls, ca_file
        self._new_connection = new_connection
        self._channel = self._make_channel()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._timeout = timeout
        self._bind()

    def _bind(self) -> None:
        """Make this transport's callables (and state) on ``self._channel``."""

    def _make_channel(self) -> grpc.Channel:
        target, tls, ca_file = self._address
        return open_channel(target, tls=tls, ca_file=ca_file, own=self._new_connection)

    def _fresh_channel(self) -> None:
        """With ``new_connection``: this call's own channel (the last one is closed)."""
        if self._new_connection:
            self._channel.close()
            self._channel = self._make_channel()
            self._bind()

    def _done_with_channel(self) -> None:
        """With ``new_connection``: close this call's channel, once its clock stopped."""
        if self._new_connection:
            self._channel.close()

    def close(self) -> None:
        self._channel.close()


def detect_request(image: bytes, model: str, save: bool, frame_id: str) -> bytes:
    """A ``facewire.v1.DetectRequest``, serialized; the model as given (a service must
    refuse an unknown one, so the client does not check it)."""
    message = pb.DetectRequest(image=image, model=model, save=save, frame_id=frame_id)
    return message.SerializeToString()


def parse_answer(raw: bytes) -> pb.DetectResponse:
    try:
        return pb.DetectResponse.FromString(raw)
    except DecodeError:
        raise TransportError("protocol", "the reply is not a facewire answer") from None


def reply(request: bytes, raw: bytes, message: pb.DetectResponse, start_ns: int,
          received_ns: int) -> Reply:  # fmt: skip
    """Convert the answer, then stop the clock: parsing is part of what is measured."""
    result = result_to_core(message)
    end = time.perf_counter_ns()
    return Reply(result, (end - start_ns) / 1e6, len(request), len(raw), (end - received_ns) / 1e6)


def grpc_error(error: grpc.RpcError) -> TransportError:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return TransportError("unreachable", details)
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return TransportError("timeout", "no answer in time")
    name = code.name if code is not None else "UNKNOWN"
    return TransportError("rejected", f"{name}: {details}")
