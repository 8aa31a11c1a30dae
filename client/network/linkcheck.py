"""Does the link do what its profile says? Bytes pushed through it each way, timed.

A helper runs inside the services' namespace (``python -m client.network.linkcheck
PORT``) and serves one connection: it reads how much to receive and send, receives
that much, acknowledges with one byte, then sends. The client times the upload (until
the acknowledgement) and the download; each should take its bytes ÷ that direction's
rate. The sizes are chosen so that each transfer lasts about half a second at the
profile's rate, long enough for TCP's start and tbf's bucket to be a small part.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass

from client.network.namespace import ServiceNetwork
from client.processes import Child, free_port

HEADER = struct.Struct("!QQ")  # bytes to receive, bytes to send
#: Each transfer's intended length at the profile's rate, and the bounds on its size.
SECONDS = 0.5
MIN_BYTES, MAX_BYTES = 64 * 1024, 32 * 1024 * 1024
#: Within this fraction of bytes ÷ rate, a direction's rate is as the profile says.
TOLERANCE = 0.2
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Direction:
    bytes: int
    expected_ms: float  # bytes ÷ the profile's rate
    measured_ms: float

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.expected_ms

    @property
    def agrees(self) -> bool:
        return abs(self.ratio - 1) <= TOLERANCE

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": round(self.ratio, 3), "agrees": self.agrees}


def size_for(mbit: float | None) -> int:
    if mbit is None:
        return MIN_BYTES
    return int(min(MAX_BYTES, max(MIN_BYTES, mbit * 1e6 / 8 * SECONDS)))


def check(network: ServiceNetwork) -> dict[str, Direction]:
    """The up and down transfers through ``network``, for each direction it shapes."""
    profile = network.profile
    up, down = size_for(profile.up_mbit), size_for(profile.down_mbit)
    port = free_port()
    helper = Child("client.network.linkcheck", [network.service_ip, str(port)],
                   prefix=network.prefix)  # fmt: skip
    try:
        helper.wait_for_output("listening", timeout=30)
        with socket.create_connection((network.service_ip, port), timeout=120) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(HEADER.pack(up, down))
            payload = bytes(CHUNK)
            start = time.perf_counter()
            sent = 0
            while sent < up:
                sent += sock.send(payload[: min(CHUNK, up - sent)])
            _receive(sock, 1)
            uploaded = time.perf_counter()
            _receive(sock, down)
            downloaded = time.perf_counter()
    finally:
        helper.stop()
    result = {}
    timed = (("up", profile.up_mbit, up, uploaded - start),
             ("down", profile.down_mbit, down, downloaded - uploaded))  # fmt: skip
    for name, mbit, size, seconds in timed:
        if mbit is not None:
            result[name] = Direction(size, size * 8 / (mbit * 1e6) * 1000, seconds * 1000)
    return result


def describe(directions: dict[str, Direction]) -> str:
    """One line for the console and the report; a direction off by more than TOLERANCE
    says so, because the numbers taken over it are not the profile's."""
    return "; ".join(
        f"{name} {d.bytes / 1024:.0f} KiB in {d.measured_ms:.0f} ms against "
        f"{d.expected_ms:.0f} ms for its bytes ÷ the rate ({(d.ratio - 1) * 100:+.0f} %"
        + ("" if d.agrees else f", NOT within ±{TOLERANCE:.0%} of the profile")
        + ")"
        for name, d in directions.items()
    )


def from_dicts(saved: dict[str, dict[str, float]]) -> dict[str, Direction]:
    """Directions back from a report's JSON (``Direction.as_dict``)."""
    return {
        name: Direction(int(d["bytes"]), d["expected_ms"], d["measured_ms"])
        for name, d in saved.items()
    }


def _receive(sock: socket.socket, count: int) -> bytes:
    parts, left = [], count
    while left:
        part = sock.recv(min(CHUNK, left))
        if not part:
            raise ConnectionError("the link check's helper closed the connection early")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def serve_once(host: str, port: int) -> None:
    """The helper: one connection, as described above."""
    with socket.create_server((host, port)) as server:
        print("listening", flush=True)
        connection, _ = server.accept()
        with connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up, down = HEADER.unpack(_receive(connection, HEADER.size))
            left = up
            while left:
                part = connection.recv(min(CHUNK, left))
                if not part:
                    return
                left -= len(part)
            connection.sendall(b"!")
            payload = bytes(CHUNK)
            while down:
                down -= connection.send(payload[: min(CHUNK, down)])


if __name__ == "__main__":
    serve_once(sys.argv[1], int(sys.argv[2]))
