"""Exit 0 when the gRPC service reports SERVING: ``python -m grpc_service.healthcheck``.

Docker's HEALTHCHECK uses it; the slim image has no grpc_health_probe binary.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, timeout: float) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    sys.exit(0 if check(args.target, args.timeout) else 1)


if __name__ == "__main__":
    main()
