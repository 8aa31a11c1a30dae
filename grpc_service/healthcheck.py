"""Exit 0 when the gRPC service reports SERVING: ``python -m grpc_service.healthcheck``.

Docker's HEALTHCHECK uses it; the slim image has no grpc_health_probe binary. It reads
the same FACEWIRE_* settings as the service: the port (FACEWIRE_GRPC_PORT, on
127.0.0.1 unless a target is given) and, when the service speaks TLS
(FACEWIRE_TLS_CERT_FILE is set) the check does too, trusting FACEWIRE_TLS_CA_FILE if set,
else the service's own certificate (a self-signed one trusts itself).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facewire.settings import Settings
from facewire.tls import trusted_file


def credentials(settings: Settings, tls: bool = False) -> grpc.ChannelCredentials | None:
    """Channel credentials for checking the service: None (plaintext) unless the settings
    have a TLS certificate or ``tls`` asks for TLS anyway."""
    if not (tls or settings.tls):
        return None
    trusted = trusted_file(settings)
    return grpc.ssl_channel_credentials(trusted.read_bytes() if trusted else None)


def check(
    target: str,
    timeout: float,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
) -> bool:
    """Whether the service at ``target`` is SERVING; over TLS when ``credentials`` are
    given, checking the certificate for ``server_name`` instead of the target's host."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "target", nargs="?", help="host:port (default 127.0.0.1 and FACEWIRE_GRPC_PORT)"
    )
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument(
        "--tls", action="store_true", help="use TLS even without FACEWIRE_TLS_CERT_FILE"
    )
    parser.add_argument(
        "--server-name",
        help="the name the service's certificate must carry, when it is not the target's "
        "host (a certificate for facewire.example.com, checked at 127.0.0.1, say)",
    )
    args = parser.parse_args()
    settings = Settings()
    try:
        channel_credentials = credentials(settings, args.tls)
    except OSError as exc:
        sys.exit(f"healthcheck: cannot read the certificates to trust: {exc}")
    target = args.target or f"127.0.0.1:{settings.grpc_port}"
    serving = check(target, args.timeout, channel_credentials, args.server_name)
    sys.exit(0 if serving else 1)


if __name__ == "__main__":
    main()
