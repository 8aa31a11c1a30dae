"""Does the link do what its profile says? Its round trip, loss and rates, measured.

A helper runs inside the services' namespace (``python -m client.network.linkcheck
HOST PORT``) and serves the probes, one TCP connection each:

- **round trip**: TCP connects, timed (a connect is one round trip: SYN, SYN-ACK);
- **loss**: a paced burst of small UDP datagrams each way, counted at the far end;
- **rate**: full-size UDP datagrams sent at 1.5 × each shaped direction's rate for
  half a second; the far end times their arrival, first to last, which the shaper
  paces at its rate (its queue holds the excess: 400 ms at the rate). UDP, because
  TCP's own rate across a round trip and loss is TCP's (slow start, the loss
  equation), not the link's.

Each against its setting gives a verdict (``LinkCheck.agrees``). The same probes,
unpaced and one way on an unshaped link, measure what an engine itself can carry
(``client.network.limits``).
"""

from __future__ import annotations

import contextlib
import math
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from client.network.namespace import ServiceNetwork
from client.processes import Child, free_port

#: Each connection starts with one of these: the probe, datagrams up and down, the
#: client's UDP port, the datagrams' size, and the down interval.
HEADER = struct.Struct("!cIIHHd")
OP_CONNECT, OP_DATAGRAMS = b"c", b"d"
#: Each probe's intended length.
SECONDS = 0.5
#: The rate probe: datagrams of RATE_BYTES (WIRE_OVERHEAD more on the wire: UDP, IPv4,
#: Ethernet), sent at OVERDRIVE × the rate so that the shaper, not the sender, sets it.
RATE_BYTES, OVERDRIVE, MIN_RATE_DATAGRAMS, MAX_RATE_DATAGRAMS = 1400, 1.5, 50, 100_000
#: Within this fraction of bytes ÷ rate, a direction's rate is as the profile says.
TOLERANCE = 0.2
#: A round trip agrees within this fraction of the setting, or RTT_FLOOR_MS,
#: whichever is larger (plus the jitter), over the engine's own at 0 ms.
RTT_TOLERANCE, RTT_FLOOR_MS = 0.1, 2.0
CONNECTS = 7
#: The loss probe: datagrams each way and their payload; paced to at most LOSS_SHARE
#: of the direction's rate so that no queue overflows (a drop must be the profile's).
DATAGRAMS, DATAGRAM_BYTES, WIRE_OVERHEAD = 1000, 64, 42
MIN_DATAGRAMS, LOSS_SHARE, LOSS_PPS = 200, 0.5, 4000
#: A loss agrees when the count lost is within this many standard deviations of the
#: binomial expectation (and one datagram, for a loss of 0).
LOSS_SIGMAS = 3.3
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Arrivals:
    """What one direction of a datagram probe delivered."""

    sent: int
    arrived: int
    span_s: float  # first arrival to last
    send_s: float  # how long the sender took to send them all


@dataclass(frozen=True)
class Direction:
    bytes: int  # on the wire, that arrived after the first datagram
    expected_ms: float  # bytes ÷ the profile's rate
    measured_ms: float  # first arrival to last
    sent_mbit: float = math.inf  # what the probe's sender reached

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.expected_ms

    @property
    def checked(self) -> bool:
        """Whether the sender went faster than the rate (else the rate was not tried)."""
        return self.sent_mbit * self.expected_ms >= self.bytes * 8 / 1000

    @property
    def agrees(self) -> bool:
        return not self.checked or abs(self.ratio - 1) <= TOLERANCE

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": round(self.ratio, 3), "checked": self.checked,
                "agrees": self.agrees}  # fmt: skip


@dataclass(frozen=True)
class RoundTrip:
    setting_ms: float
    jitter_ms: float
    engine_ms: float  # what the engine adds at 0 ms (its limits), expected on top
    samples_ms: list[float]

    @property
    def measured_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def expected_ms(self) -> float:
        return self.setting_ms + self.engine_ms

    @property
    def agrees(self) -> bool:
        slack = max(RTT_FLOOR_MS, RTT_TOLERANCE * self.setting_ms) + self.jitter_ms
        return abs(self.measured_ms - self.expected_ms) <= slack

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "measured_ms": round(self.measured_ms, 3),
                "agrees": self.agrees}  # fmt: skip


@dataclass(frozen=True)
class Loss:
    setting_pct: float
    sent: int
    received: int

    @property
    def measured_pct(self) -> float:
        return 100 * (self.sent - self.received) / self.sent

    @property
    def agrees(self) -> bool:
        p = self.setting_pct / 100
        expected = self.sent * p
        sigma = math.sqrt(self.sent * p * (1 - p))
        return abs((self.sent - self.received) - expected) <= LOSS_SIGMAS * sigma + 1

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "measured_pct": round(self.measured_pct, 3),
                "agrees": self.agrees}  # fmt: skip


@dataclass(frozen=True)
class LinkCheck:
    """Every probe of one link, and whether each agrees with the profile."""

    engine: str
    round_trip: RoundTrip
    loss: dict[str, Loss]  # "up", "down"
    rates: dict[str, Direction] = field(default_factory=dict)  # shaped directions only
    seconds: float = 0.0

    @property
    def agrees(self) -> bool:
        parts: list[Any] = [self.round_trip, *self.loss.values(), *self.rates.values()]
        return all(part.agrees for part in parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "agrees": self.agrees,
            "seconds": round(self.seconds, 2),
            "round_trip": self.round_trip.as_dict(),
            "loss": {name: loss.as_dict() for name, loss in self.loss.items()},
            "rates": {name: d.as_dict() for name, d in self.rates.items()},
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> LinkCheck:
        """A check back from a report's JSON (``as_dict``)."""
        trip = saved["round_trip"]
        return cls(
            engine=saved["engine"],
            round_trip=RoundTrip(
                trip["setting_ms"], trip["jitter_ms"], trip["engine_ms"], list(trip["samples_ms"])
            ),
            loss={
                name: Loss(d["setting_pct"], d["sent"], d["received"])
                for name, d in saved["loss"].items()
            },
            rates={
                name: Direction(
                    int(d["bytes"]),
                    d["expected_ms"],
                    d["measured_ms"],
                    d.get("sent_mbit", math.inf),
                )
                for name, d in saved["rates"].items()
            },
            seconds=saved.get("seconds", 0.0),
        )

    def describe(self) -> str:
        """One line for the console and the report; a probe that disagrees says so,
        because the numbers taken over the link are not the profile's."""
        trip = self.round_trip
        parts = [
            f"round trip {trip.measured_ms:.1f} ms against {trip.expected_ms:.1f} "
            f"({trip.setting_ms:g} set + {trip.engine_ms:.2f} the engine's own)"
            + ("" if trip.agrees else " NOT as set"),
            "loss "
            + ", ".join(
                f"{name} {loss.measured_pct:.1f} % of {loss.sent} against {loss.setting_pct:g}"
                + ("" if loss.agrees else " NOT as set")
                for name, loss in self.loss.items()
            ),
        ]
        parts += [
            f"{name} {d.bytes / 1024:.0f} KiB in {d.measured_ms:.0f} ms against "
            f"{d.expected_ms:.0f} ms for its bytes ÷ the rate ({(d.ratio - 1) * 100:+.0f} %"
            + ("" if d.agrees else f", NOT within ±{TOLERANCE:.0%} of the profile")
            + ("" if d.checked else f"; not tried: the probe sent {d.sent_mbit:.0f} Mbit/s")
            + ")"
            for name, d in self.rates.items()
        ]
        verdict = "agrees with its profile" if self.agrees else "DOES NOT agree with its profile"
        return f"{self.engine}: {'; '.join(parts)}: {verdict}"


def rate_datagrams(mbit: float | None) -> tuple[int, float]:
    """The rate probe for one direction: how many datagrams, and their interval (s);
    none for a direction not shaped."""
    if mbit is None:
        return 0, 0.0
    bits = (RATE_BYTES + WIRE_OVERHEAD) * 8
    pps = mbit * 1e6 * OVERDRIVE / bits
    return max(MIN_RATE_DATAGRAMS, min(MAX_RATE_DATAGRAMS, int(pps * SECONDS))), 1 / pps


def datagrams_for(mbit: float | None) -> tuple[int, float]:
    """How many loss-probe datagrams one direction gets, and their interval (s): at
    most LOSS_SHARE of its rate, and about SECONDS long."""
    bits = (DATAGRAM_BYTES + WIRE_OVERHEAD) * 8
    pps = LOSS_PPS if mbit is None else min(LOSS_PPS, mbit * 1e6 * LOSS_SHARE / bits)
    count = max(MIN_DATAGRAMS, min(DATAGRAMS, int(pps * SECONDS * 2)))
    return count, 1 / pps


class Helper:
    """The probes' far end, inside ``network``'s namespace, for a block."""

    def __init__(self, network: ServiceNetwork) -> None:
        self.host, self.port = network.service_ip, free_port()
        self.child = Child("client.network.linkcheck", [self.host, str(self.port)],
                           prefix=network.prefix)  # fmt: skip

    def __enter__(self) -> Helper:
        self.child.wait_for_output("listening", timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.child.stop()

    def connect(self, op: bytes, up: int = 0, down: int = 0, port: int = 0, size: int = 0,
                value: float = 0.0) -> socket.socket:  # fmt: skip
        sock = socket.create_connection((self.host, self.port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(HEADER.pack(op, up, down, port, size, value))
        return sock

    def connect_ms(self) -> float:
        """One TCP connect's time: a round trip, SYN to SYN-ACK."""
        start = time.perf_counter()
        sock = socket.create_connection((self.host, self.port), timeout=30)
        elapsed = (time.perf_counter() - start) * 1000
        sock.sendall(HEADER.pack(OP_CONNECT, 0, 0, 0, 0, 0.0))
        sock.close()
        return elapsed

    def datagrams(self, size: int, up: tuple[int, float], down: tuple[int, float],
                  drain_s: float) -> tuple[Arrivals, Arrivals]:  # fmt: skip
        """``up[0]`` datagrams of ``size`` bytes to the helper at ``up[1]`` seconds
        apart (0: as fast as this process can), then ``down[0]`` back likewise; what
        arrived each way. ``drain_s``: how long the last of them may still take."""
        with _udp_socket("0.0.0.0") as udp:
            own_port = udp.getsockname()[1]
            with self.connect(OP_DATAGRAMS, up[0], down[0], own_port, size, down[1]) as sock:
                udp_port = struct.unpack("!H", _receive(sock, 2))[0]
                send_s = send_paced(udp, (self.host, udp_port), up[0], up[1], size)
                sock.sendall(struct.pack("!d", drain_s))
                arrived, span = struct.unpack("!Qd", _receive(sock, 16))
                got, got_span = count_until_told(udp, down[0], sock, drain_s)
                down_send_s = struct.unpack("!d", _receive(sock, 8))[0]
        return (Arrivals(up[0], arrived, span, send_s),
                Arrivals(down[0], got, got_span, down_send_s))  # fmt: skip


def send_paced(udp: socket.socket, address: tuple[str, int], count: int, interval: float,
               size: int) -> float:  # fmt: skip
    """``count`` datagrams, numbered, ``interval`` seconds apart; the seconds it took."""
    payload = bytearray(size)
    start = time.perf_counter()
    for sequence in range(count):
        struct.pack_into("!I", payload, 0, sequence)
        wait = start + sequence * interval - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # pacing the probe's datagrams
        udp.sendto(payload, address)
    return time.perf_counter() - start


def count_until_told(udp: socket.socket, count: int, told: socket.socket,
                     drain_s: float | None = None) -> tuple[int, float]:  # fmt: skip
    """Datagrams on ``udp`` until ``count`` arrived, or until the drain time has passed
    since the sender said it has sent them all, on ``told``: a byte, or (``drain_s``
    None) the drain time itself, 8 bytes. How many arrived, and the seconds from the
    first to the last."""
    seen: set[int] = set()
    first = last = 0.0
    expected = 1 if drain_s is not None else 8
    said = b""
    said_at = 0.0
    told.setblocking(False)
    udp.settimeout(0.01)
    try:
        while len(seen) < count:
            if len(said) < expected:
                with contextlib.suppress(BlockingIOError):
                    said += told.recv(expected - len(said))
                said_at = time.monotonic()
            else:
                drain = drain_s if drain_s is not None else struct.unpack("!d", said)[0]
                if time.monotonic() - said_at > drain:
                    break
            try:
                data = udp.recv(65536)
            except TimeoutError:
                continue
            last = time.perf_counter()
            first = first or last
            seen.add(struct.unpack_from("!I", data)[0])
    finally:
        told.setblocking(True)
    if len(said) < expected:  # all arrived before the sender said so: read it now
        _receive(told, expected - len(said))
    return len(seen), last - first


def check(network: ServiceNetwork, engine_ms: float | None = None) -> LinkCheck:
    """Every probe through ``network``; ``engine_ms``: what its engine adds at 0 ms
    (its measured limits by default)."""
    from client.network import limits

    started = time.perf_counter()
    profile = network.profile
    if engine_ms is None:
        engine_ms = limits.added_rtt_ms(network.engine)
    drain_s = max(0.3, 3 * (profile.rtt_ms + profile.jitter_ms) / 1000)
    with Helper(network) as helper:
        samples = [helper.connect_ms() for _ in range(CONNECTS)]
        lost = helper.datagrams(DATAGRAM_BYTES, datagrams_for(profile.up_mbit),
                                datagrams_for(profile.down_mbit), drain_s)  # fmt: skip
        rates: dict[str, Direction] = {}
        if profile.up_mbit is not None or profile.down_mbit is not None:
            # The shaper's queue (400 ms at the rate) drains after the sender stops.
            paced = helper.datagrams(RATE_BYTES, rate_datagrams(profile.up_mbit),
                                     rate_datagrams(profile.down_mbit), drain_s + 0.5)  # fmt: skip
            for name, mbit, arrivals in zip(("up", "down"), (profile.up_mbit, profile.down_mbit),
                                            paced, strict=True):  # fmt: skip
                if mbit is not None:
                    rates[name] = _direction(arrivals, mbit)
    return LinkCheck(
        engine=network.engine,
        round_trip=RoundTrip(profile.rtt_ms, profile.jitter_ms, engine_ms, samples),
        loss={
            name: Loss(profile.loss_pct, a.sent, a.arrived)
            for name, a in zip(("up", "down"), lost, strict=True)
        },
        rates=rates,
        seconds=time.perf_counter() - started,
    )


def record(network: ServiceNetwork, say: Callable[[str], object]) -> dict[str, object]:
    """What every shaped run records of its link: the engine and its settings, its
    limits on this machine, and the link check (said in a line, and a warning when it
    disagrees: the run goes on, but its numbers are not the profile's)."""
    from client.network import limits

    checked = check(network)
    say(f"link check: {checked.describe()}")
    if not checked.agrees:
        say("WARNING: the link does not do what its profile says; see the link check")
    return {"engine": network.describe_engine(), "limits": limits.known(network.engine).as_dict(),
            "check": checked.as_dict()}  # fmt: skip


def _direction(arrivals: Arrivals, mbit: float) -> Direction:
    """The rate probe's arrivals against ``mbit``: the bytes after the first datagram
    took their span; the rate says how long they should have."""
    wire = (max(arrivals.arrived, 1) - 1) * (RATE_BYTES + WIRE_OVERHEAD)
    sent_mbit = arrivals.sent * (RATE_BYTES + WIRE_OVERHEAD) * 8 / max(arrivals.send_s, 1e-9) / 1e6
    return Direction(wire, wire * 8 / (mbit * 1e6) * 1000, arrivals.span_s * 1000,
                     round(sent_mbit, 1))  # fmt: skip


def _receive(sock: socket.socket, count: int) -> bytes:
    parts, left = [], count
    while left:
        part = sock.recv(min(CHUNK, left))
        if not part:
            raise ConnectionError("the link check's helper closed the connection early")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _udp_socket(host: str) -> socket.socket:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((host, 0))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    return udp


def _serve(connection: socket.socket, host: str) -> None:
    with connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            op, up, down, port, size, value = HEADER.unpack(_receive(connection, HEADER.size))
        except ConnectionError:
            return  # a connect probe that closed first
        if op == OP_DATAGRAMS:
            with _udp_socket(host) as udp:
                connection.sendall(struct.pack("!H", udp.getsockname()[1]))
                arrived, span = count_until_told(udp, up, connection)
                connection.sendall(struct.pack("!Qd", arrived, span))
                client = (connection.getpeername()[0], port)
                sent_s = send_paced(udp, client, down, value, size) if down else 0.0
                connection.sendall(b"!" + struct.pack("!d", sent_s))


def serve(host: str, port: int) -> None:
    """The helper: every probe's far end, a thread per connection, until stopped."""
    with socket.create_server((host, port), backlog=64) as server:
        print("listening", flush=True)
        while True:
            connection, _ = server.accept()
            threading.Thread(target=_serve, args=(connection, host), daemon=True).start()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
