"""Whether both services are ready: REST's ``/readyz`` and gRPC's standard health
service, checked the way their own health checks do, with the client's TLS trust."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.transports import ProtocolName, TransportError, make_transport
from client.transports.base import ssl_context
from client.transports.channel import open_channel
from facewire.settings import Settings
from facewire.tls import trusted_file


def rest_ready(rest_url: str, timeout: float = 1.0) -> bool:
    """Whether ``rest_url`` answers /readyz with 200 (https trusting what the services'
    own checks trust: FACEWIRE_TLS_CA_FILE, else the service's certificate)."""
    trusted = trusted_file(Settings())
    verify = ssl_context(trusted) if trusted else True
    try:
        return httpx.get(f"{rest_url}/readyz", timeout=timeout, verify=verify).status_code == 200
    except httpx.TransportError:
        return False


def grpc_serving(target: str, tls: bool = False, timeout: float = 1.0) -> bool:
    """Whether the gRPC service at ``target`` reports SERVING."""
    settings = Settings()
    trusted = trusted_file(settings)
    with open_channel(target, tls=tls or settings.tls, ca_file=trusted) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def ready(rest_url: str, grpc_target: str) -> bool:
    """Both services ready (TLS follows the REST URL's scheme, as the transports do)."""
    return rest_ready(rest_url) and grpc_serving(grpc_target, tls=rest_url.startswith("https"))


def answers(
    rest_url: str,
    grpc_target: str,
    ca_file: Path | str | None = None,
    protocols: tuple[ProtocolName, ...] = ("rest", "grpc"),
) -> bool:
    """Each of ``protocols`` answers an echo the way the client reaches it (TLS and a
    certificate to trust included): ready, and reachable through whatever lies between
    (a link, a proxy)."""
    for protocol in protocols:
        transport = make_transport(protocol, rest_url, grpc_target, token="", ca_file=ca_file)
        try:
            transport.detect(b"\xff\xd8\xff", model="echo", save=False, frame_id="ready")
        except (TransportError, ValueError):
            return False
        finally:
            transport.close()
    return True
