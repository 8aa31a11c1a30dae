"""The factorial: is it HTTP/2, protobuf, or the implementation?

"gRPC is faster because of binary Protobuf and HTTP/2" bundles three factors. Here each
is varied with the others held still, against one REST app served by Granian (HTTP/1.1
and HTTP/2 on one port, so the server is the same for both versions) and measured
through one client library (httpx, over HTTP/1.1 or HTTP/2):

- **HTTP version**: HTTP/1.1 or HTTP/2 (h2c with prior knowledge).
- **Encoding**: the raw JPEG body with a JSON answer (``/v1/detect``), protobuf both
  ways (``/v1/detect``, the gRPC service's own messages), or JSON with the image in
  base64 both ways (the Open Inference Protocol's plain JSON, ``/v2/.../infer``).
- **Mode**: a request per frame, or one long-lived stream: REST's WebSocket
  (``/v1/stream``, HTTP/1.1: the raw body; websockets' client) and gRPC's stream.
- **Implementation**: grpcio (its C core, client and server) against the REST cell
  with the same version and encoding, REST over HTTP/2 with protobuf.

Latency at concurrency 1: requests alternate between every cell, so each round meets
one moment of the machine, and every effect is computed within a round (a contrast of
that round's latencies) before its median is taken, with a distribution-free 95 %
interval (``alternate.median_ci``). At concurrency 8: windows alternate between the
cells; every cell uses eight connections (one per thread: grpcio's too, so that the
implementation is all that differs), the streams eight streams. Effects there are
ratios of answers per second, with the range over the rounds. Both on loopback and
across the round-trip link.

Why REST over HTTP/2 does not share one connection between threads: httpx's
synchronous HTTP/2 client breaks when threads share a connection (encode/httpx#3072,
#3324, open): here eight threads on one connection drew PROTOCOL_ERROR GOAWAYs from
Granian and KeyErrors in httpcore within seconds, while h2load sent 4000 requests, 8
at a time on one connection, to the same service with none failing. One connection
multiplexed is what the ``multiplexing`` experiment measures, with grpcio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client.bench.alternate import alternate, median_ci
from client.bench.claims.loops import closed_loops
from client.transports import Transport
from client.transports.rest import (
    HttpVersion,
    RestProtobufTransport,
    RestTransport,
    RestV2JsonTransport,
)
from client.transports.stream import GrpcStreamTransport
from client.transports.unary import GrpcTransport
from client.transports.websocket import WebSocketTransport

Data = dict[str, Any]
VERSIONS: dict[str, HttpVersion] = {"HTTP/1.1": "httpx-1.1", "HTTP/2": "2"}
ENCODINGS = {"raw": RestTransport, "protobuf": RestProtobufTransport,
             "JSON+base64": RestV2JsonTransport}  # fmt: skip
#: Requests in flight at the second level.
CONCURRENCY = 8


@dataclass(frozen=True)
class Cell:
    """One combination of the factors, and how to reach it."""

    name: str
    version: str  # "HTTP/1.1", "HTTP/2"
    encoding: str  # "raw", "protobuf", "JSON+base64"
    mode: str  # "unary", "stream"
    server: str  # "granian" (REST) or "grpcio"
    #: (the REST service on Granian's URL, the gRPC target) → a transport.
    make: Callable[[str, str], Transport]
    #: Whether threads may share one transport (one connection, streams multiplexed).
    shared: bool


def _rest(encoding: str, version: str) -> Callable[[str, str], Transport]:
    form, http = ENCODINGS[encoding], VERSIONS[version]

    def make(url: str, target: str) -> Transport:
        return form(url, token="", http_version=http)

    return make


CELLS: tuple[Cell, ...] = (
    *(Cell(f"REST {v} {e}", v, e, "unary", "granian", _rest(e, v), False)
      for v in VERSIONS for e in ENCODINGS),
    Cell("REST HTTP/1.1 WebSocket", "HTTP/1.1", "raw", "stream", "granian",
         lambda url, target: WebSocketTransport(url, token=""), False),
    Cell("grpcio unary", "HTTP/2", "protobuf", "unary", "grpcio",
         lambda url, target: GrpcTransport(target, token=""), False),
    Cell("grpcio stream", "HTTP/2", "protobuf", "stream", "grpcio",
         lambda url, target: GrpcStreamTransport(target, token=""), False),
)  # fmt: skip
BY_NAME = {cell.name: cell for cell in CELLS}


def _name(version: str, encoding: str) -> str:
    return f"REST {version} {encoding}"


#: Each effect at concurrency 1: a contrast of one round's latencies (ms), named.
CONTRASTS: dict[str, Callable[[dict[str, float]], float]] = {
    # The HTTP version, averaged over the three encodings; then for each.
    "HTTP/2 − HTTP/1.1 (mean over encodings)": lambda r: statistics.fmean(
        r[_name("HTTP/2", e)] - r[_name("HTTP/1.1", e)] for e in ENCODINGS),
    **{f"HTTP/2 − HTTP/1.1, {e}": (lambda r, e=e: r[_name("HTTP/2", e)]  # type: ignore[misc]
                                   - r[_name("HTTP/1.1", e)]) for e in ENCODINGS},
    # The encoding, averaged over the two versions.
    "protobuf − raw (mean over versions)": lambda r: statistics.fmean(
        r[_name(v, "protobuf")] - r[_name(v, "raw")] for v in VERSIONS),
    "JSON+base64 − raw (mean over versions)": lambda r: statistics.fmean(
        r[_name(v, "JSON+base64")] - r[_name(v, "raw")] for v in VERSIONS),
    "protobuf − raw, HTTP/2": lambda r: (
        r[_name("HTTP/2", "protobuf")] - r[_name("HTTP/2", "raw")]),
    # Whether HTTP/2's effect depends on the encoding.
    "interaction: version × protobuf": lambda r: (
        (r[_name("HTTP/2", "protobuf")] - r[_name("HTTP/1.1", "protobuf")])
        - (r[_name("HTTP/2", "raw")] - r[_name("HTTP/1.1", "raw")])),
    "interaction: version × JSON+base64": lambda r: (
        (r[_name("HTTP/2", "JSON+base64")] - r[_name("HTTP/1.1", "JSON+base64")])
        - (r[_name("HTTP/2", "raw")] - r[_name("HTTP/1.1", "raw")])),
    # A stream against a request per frame, each on its own stack.
    "stream − unary, REST (WebSocket − HTTP/1.1 raw)": lambda r: (
        r["REST HTTP/1.1 WebSocket"] - r[_name("HTTP/1.1", "raw")]),
    "stream − unary, grpcio": lambda r: r["grpcio stream"] - r["grpcio unary"],
    # The implementation: the same version and encoding, grpcio's stack against REST's.
    "implementation: grpcio − REST HTTP/2 protobuf": lambda r: (
        r["grpcio unary"] - r[_name("HTTP/2", "protobuf")]),
    # The whole bundle, for the shares: grpcio against REST HTTP/1.1 raw.
    "bundle: grpcio − REST HTTP/1.1 raw": lambda r: (
        r["grpcio unary"] - r[_name("HTTP/1.1", "raw")]),
}  # fmt: skip


def latency(url: str, target: str, images: list[bytes], requests: int) -> Data:
    """Every cell at concurrency 1, echo, requests alternating: each cell's p50, and each
    contrast's median with its 95 % interval."""
    clients = {cell.name: cell.make(url, target) for cell in CELLS}
    try:
        taken = alternate(clients, images, "echo", requests)
    finally:
        for client in clients.values():
            client.close()
    rounds = [dict(zip(taken.times, values, strict=True))
              for values in zip(*taken.times.values(), strict=True)]  # fmt: skip
    effects = {}
    for name, contrast in CONTRASTS.items():
        middle, low, high = median_ci([contrast(r) for r in rounds])
        effects[name] = [round(middle, 3), round(low, 3), round(high, 3)]
    return {
        "cells": {
            n: {
                "p50_ms": round(taken.p50(n), 3),
                "sent_bytes": round(statistics.fmean(taken.sent[n])),
                "received_bytes": round(statistics.fmean(taken.received[n])),
            }
            for n in taken.times
        },
        "effects_ms": effects,
        "rounds": len(rounds),
        "errors": dict(taken.errors),
    }


def throughput(url: str, target: str, images: list[bytes], windows: int,
               seconds: float) -> Data:  # fmt: skip
    """Every cell at concurrency 8, echo, windows alternating (the first round warms up
    and is not counted): answers per second and p50 per round, and the effects as
    ratios of answers per second per round (median, and the range over rounds)."""
    rates: dict[str, list[float]] = {cell.name: [] for cell in CELLS}
    p50s: dict[str, list[float]] = {cell.name: [] for cell in CELLS}
    errors: dict[str, int] = {cell.name: 0 for cell in CELLS}
    for k in range(windows + 1):
        for cell in CELLS:
            if cell.shared:
                one = cell.make(url, target)
                clients = [one] * CONCURRENCY
            else:
                clients = [cell.make(url, target) for _ in range(CONCURRENCY)]
            try:
                taken = closed_loops(clients, images, "echo", seconds)
            finally:
                for client in {id(c): c for c in clients}.values():
                    client.close()
            if k:
                rates[cell.name].append(len(taken.latencies) / taken.seconds)
                p50s[cell.name].append(statistics.median(taken.latencies or [0.0]))
                errors[cell.name] += taken.failed
    ratios = {
        "HTTP/2 ÷ HTTP/1.1, " + e: (_name("HTTP/2", e), _name("HTTP/1.1", e)) for e in ENCODINGS
    }
    ratios |= {
        "protobuf ÷ raw, HTTP/2": (_name("HTTP/2", "protobuf"), _name("HTTP/2", "raw")),
        "JSON+base64 ÷ raw, HTTP/2": (_name("HTTP/2", "JSON+base64"), _name("HTTP/2", "raw")),
        "stream ÷ unary, REST": ("REST HTTP/1.1 WebSocket", _name("HTTP/1.1", "raw")),
        "stream ÷ unary, grpcio": ("grpcio stream", "grpcio unary"),
        "grpcio ÷ REST HTTP/2 protobuf": ("grpcio unary", _name("HTTP/2", "protobuf")),
    }
    effects = {}
    for name, (top, bottom) in ratios.items():
        per_round = [a / b for a, b in zip(rates[top], rates[bottom], strict=True) if b]
        if per_round:
            effects[name] = [round(statistics.median(per_round), 3),
                             round(min(per_round), 3), round(max(per_round), 3)]  # fmt: skip
    return {
        "cells": {
            n: {
                "answers_per_s": round(statistics.median(r), 1),
                "p50_ms": round(statistics.median(p50s[n]), 2),
            }
            for n, r in rates.items()
            if r
        },
        "answers_per_s_ratios": effects,
        "errors": {n: e for n, e in errors.items() if e},
        "rounds": windows,
        "concurrency": CONCURRENCY,
    }


def describe_cells() -> list[dict[str, str]]:
    """What each cell varies, for the report."""
    return [{"cell": c.name, "HTTP": c.version, "encoding": c.encoding, "mode": c.mode,
             "server": c.server} for c in CELLS]  # fmt: skip
