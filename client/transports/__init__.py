"""One client interface, seven transports: REST, gRPC unary and gRPC stream (facewire's
own APIs), REST over HTTP/2, REST's WebSocket stream, and the Open Inference Protocol
over REST and gRPC; and REST's other payload forms (multipart, protobuf, the v2 request
as plain JSON).

Every transport is measured the same way: the clock starts just before the request is
built and sent, and stops once the response is fully parsed into the core
``DetectionResult``. ``parse_ms`` is the part after the last byte arrived: JSON or
protobuf decoding plus conversion (gRPC calls return raw bytes so that protobuf decoding
happens on this clock too, as JSON decoding does). Byte counts are application
payloads: the HTTP body, or the serialized protobuf message. The wire formats are the
services' own codecs, from ``facewire.wire``.

TLS: REST follows the URL's scheme; gRPC uses a secure channel when asked to (see
``make_transport`` for the rule). ``ca_file`` names the PEM certificates to trust instead
of the system's store (a self-signed service certificate, say). Either way the cost is
paid once, when a transport (or a REST connection) is made, never per request.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from client.transports.base import (
    ALL_PROTOCOLS,
    HTTP2_PROTOCOLS,
    PAYLOAD_FORMS,
    PROTOCOLS,
    ErrorKind,
    ProtocolName,
    Reply,
    Transport,
    TransportError,
)
from client.transports.rest import (
    RestMultipartTransport,
    RestProtobufTransport,
    RestTransport,
    RestV2JsonTransport,
    RestV2Transport,
)
from client.transports.stream import GrpcStreamTransport
from client.transports.unary import GrpcTransport, GrpcV2Transport
from client.transports.websocket import WebSocketTransport
from facewire.settings import Settings

__all__ = [
    "ALL_PROTOCOLS",
    "HTTP2_PROTOCOLS",
    "PAYLOAD_FORMS",
    "PROTOCOLS",
    "ErrorKind",
    "GrpcStreamTransport",
    "GrpcTransport",
    "GrpcV2Transport",
    "ProtocolName",
    "Reply",
    "RestTransport",
    "RestV2Transport",
    "Transport",
    "TransportError",
    "WebSocketTransport",
    "make_transport",
]


#: Where ``rest-h2`` finds a REST service that speaks HTTP/2, when the one at the REST
#: URL does not (``make bench --start-services`` starts one on Granian and sets it).
REST_H2_URL_VARIABLE = "FACEWIRE_REST_H2_URL"


def make_transport(
    protocol: ProtocolName,
    rest_url: str,
    grpc_target: str,
    token: str | None = None,
    ca_file: Path | str | None = None,
    *,
    new_connection: bool = False,
) -> Transport:
    """A transport; ``token`` defaults to FACEWIRE_AUTH_TOKEN, as the services read it.
    ``new_connection``: a connection per request instead of one kept alive (not for
    grpc-stream, whose point is one long-lived stream).

    ``rest-h2`` and ``rest-h2-protobuf`` go to $FACEWIRE_REST_H2_URL where it is set,
    else to ``rest_url``; either must be served over HTTP/2 (FACEWIRE_REST_SERVER=granian),
    or every call fails with a "protocol" error that says so.

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
    if protocol in HTTP2_PROTOCOLS:
        # A REST service on Granian: its own URL where one runs beside the default
        # (uvicorn) service, else the REST service itself, which must then speak HTTP/2.
        h2_url = os.environ.get(REST_H2_URL_VARIABLE) or rest_url
        form = RestProtobufTransport if protocol == "rest-h2-protobuf" else RestTransport
        return form(h2_url, token=token, ca_file=ca_file, new_connection=new_connection,
                    http_version="2")  # fmt: skip
    if protocol == "rest":
        return RestTransport(rest_url, token=token, ca_file=ca_file, new_connection=new_connection)
    if protocol == "rest-ws":
        if new_connection:
            raise ValueError("rest-ws is one long-lived WebSocket: a new connection per "
                             "request does not apply to it")  # fmt: skip
        return WebSocketTransport(rest_url, token=token, ca_file=ca_file)
    rest_forms: dict[str, type[RestTransport]] = {
        "rest-v2": RestV2Transport,
        "rest-multipart": RestMultipartTransport,
        "rest-v2-json": RestV2JsonTransport,
        "rest-protobuf": RestProtobufTransport,
    }
    if protocol in rest_forms:
        return rest_forms[protocol](
            rest_url, token=token, ca_file=ca_file, new_connection=new_connection
        )
    tls = urlsplit(rest_url).scheme == "https" or ca_file is not None
    if protocol == "grpc":
        return GrpcTransport(grpc_target, token=token, tls=tls, ca_file=ca_file,
                             new_connection=new_connection)  # fmt: skip
    if protocol == "grpc-v2":
        return GrpcV2Transport(grpc_target, token=token, tls=tls, ca_file=ca_file,
                               new_connection=new_connection)  # fmt: skip
    if protocol != "grpc-stream":
        raise ValueError(f"unknown protocol {protocol!r}")
    if new_connection:
        raise ValueError("grpc-stream is one long-lived stream: a new connection per request "
                         "does not apply to it")  # fmt: skip
    return GrpcStreamTransport(grpc_target, token=token, tls=tls, ca_file=ca_file)
