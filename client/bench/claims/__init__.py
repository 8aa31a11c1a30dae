"""``make claims``: the claims people make about REST and gRPC, each tested here.

Each claim gets the experiment that tests it, its numbers, the conditions they hold
under, and a verdict: holds, does not hold, or holds only when. The claims are the
seeds' (``shared/seeds``), the ones this lab grew from, as written:
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    key: str
    quote: str
    source: str
    experiments: tuple[str, ...]


SEED_DEMO = "the gRPC video demo's README (seed 000)"
SEED_LAB = "the FastAPI-vs-gRPC course lab's results (seed 001)"
CLAIMS = (
    Claim("binary", "gRPC uses binary payloads, which are efficient to create and parse",
          SEED_DEMO, ("payload_forms", "codec_costs")),
    Claim("ten-times", "10 times faster message transmission compared to REST API",
          SEED_DEMO, ("rest_against_grpc", "connections")),
    Claim("headers", "HTTP/2 … compresses the header … is much safer",
          SEED_DEMO, ("header_bytes", "connections")),
    Claim("streaming", "Bi-directional streaming is possible in gRPC, which is not the case "
          "with REST API", SEED_DEMO, ("streaming", "factorial_design")),
    Claim("latency", "gRPC usually has lower latency because of binary Protobuf and HTTP/2",
          SEED_LAB, ("rest_against_grpc", "data_volume", "multiplexing", "slow_start", "loss",
                     "haar_against_echo", "factorial_design")),
    Claim("volume", "gRPC is ideal for high data volume", SEED_DEMO + " (its point on "
          "Protocol Buffers and network efficiency)", ("data_volume",)),
)  # fmt: skip
