"""The well-behaved client: a process of its own (so that the attacker's threads do not
share its interpreter) that sends a face frame to both services at a fixed rate while
an attack runs, over connections it made before the attack, and reports latency from
each request's intended send time (a stall cannot hide) and every error.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from client.transports import ProtocolName, Transport, TransportError, make_transport

PROTOCOLS: tuple[ProtocolName, ...] = ("rest", "grpc")
RATE_PER_S = 20.0  # per protocol
SAVE_EVERY = 10  # every tenth request saves its frame: the audit has something to check


@dataclass
class Served:
    """What one protocol's well-behaved client saw during one window."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    saved: int = 0

    def p99(self) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _serve(pipe: Connection, rest_url: str, grpc_target: str, ca_file: str, frame: bytes) -> None:
    transports: dict[ProtocolName, Transport] = {
        p: make_transport(p, rest_url, grpc_target, token="", ca_file=ca_file) for p in PROTOCOLS
    }
    count = 0
    while True:
        seconds = pipe.recv()
        if seconds is None:
            break
        served = {p: Served() for p in PROTOCOLS}
        period = 1.0 / (RATE_PER_S * len(PROTOCOLS))
        start = time.monotonic()
        n = 0
        while (intended := start + n * period) < start + seconds:
            protocol = PROTOCOLS[n % len(PROTOCOLS)]
            n += 1
            time.sleep(max(0.0, intended - time.monotonic()))  # the schedule, open loop
            count += 1
            save = count % SAVE_EVERY == 0
            try:
                # echo (the protocols' own cost) but for the saves, which need a model
                # that decodes the frame.
                model = "haar" if save else "echo"
                transports[protocol].detect(frame, model=model, save=save, frame_id=str(count))
            except TransportError as exc:
                served[protocol].errors.append(f"{exc.kind}: {exc.message}"[:120])
                continue
            served[protocol].latencies_ms.append((time.monotonic() - intended) * 1000)
            served[protocol].saved += save
        pipe.send(served)
    for transport in transports.values():
        transport.close()


class Bystander:
    """``measure(seconds)`` runs one window; start it before the attack, ``result()``
    after."""

    def __init__(self, rest_url: str, grpc_target: str, ca_file: Path, frame: bytes) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs, rest_url, grpc_target, str(ca_file), frame), daemon=True
        )
        self._process.start()

    def start(self, seconds: float) -> None:
        self._pipe.send(seconds)

    def result(self, timeout: float = 120.0) -> dict[ProtocolName, Served]:
        if not self._pipe.poll(timeout):
            raise RuntimeError("the well-behaved client did not report")
        served: dict[ProtocolName, Served] = self._pipe.recv()
        return served

    def close(self) -> None:
        self._pipe.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
