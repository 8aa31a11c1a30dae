"""The well-behaved clients: one per protocol, each a process of its own (so that neither
the attacker's threads nor the other protocol's stalls share its interpreter or its
clock), each sending a face frame at a fixed rate while an attack runs, over a
connection it made before the attack, and reporting latency from each request's
intended send time (a stall cannot hide) and every error.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np

from client.transports import ProtocolName, TransportError, make_transport

PROTOCOLS: tuple[ProtocolName, ...] = ("rest", "grpc")
#: Per protocol: a camera's 30 frames a second. A 17 s attack (make attack's default)
#: gives each row over 500 samples, enough for a p99.
RATE_PER_S = 30.0
SAVE_EVERY = 20  # every 20th request saves its frame: the audit has something to check
#: Fewer samples than this and a row's bound uses a lower quantile (it says which).
P99_SAMPLES = 500


@dataclass
class Served:
    """What one protocol's well-behaved client saw during one window."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    saved: int = 0

    def quantile(self) -> float:
        """0.99 with enough samples for it; else about the highest with 5 samples above."""
        n = len(self.latencies_ms)
        if n >= P99_SAMPLES:
            return 0.99
        return max(0.5, math.floor(200 * (1 - 5 / max(n, 1))) / 200)  # to a half percent

    def tail(self, q: float | None = None) -> float:
        """The latency at quantile ``q`` (default: ``quantile()``), in ms."""
        if not self.latencies_ms:
            return math.nan
        q = self.quantile() if q is None else q
        return float(np.percentile(self.latencies_ms, 100 * q))


def _serve(pipe: Connection, protocol: ProtocolName, rest_url: str, grpc_target: str,
           ca_file: str, frame: bytes) -> None:  # fmt: skip
    transport = make_transport(protocol, rest_url, grpc_target, token="", ca_file=ca_file)
    count = 0
    while True:
        seconds = pipe.recv()
        if seconds is None:
            break
        served = Served()
        period = 1.0 / RATE_PER_S
        start = time.monotonic()
        n = 0
        while (intended := start + n * period) < start + seconds:
            n += 1
            time.sleep(max(0.0, intended - time.monotonic()))  # the schedule, open loop
            count += 1
            save = count % SAVE_EVERY == 0
            try:
                # echo (the protocols' own cost) but for the saves, which need a model
                # that decodes the frame.
                model = "haar" if save else "echo"
                transport.detect(frame, model=model, save=save, frame_id=str(count))
            except TransportError as exc:
                served.errors.append(f"{exc.kind}: {exc.message}"[:120])
                continue
            served.latencies_ms.append((time.monotonic() - intended) * 1000)
            served.saved += save
        pipe.send(served)
    transport.close()


class Bystander:
    """``start(seconds)`` runs one window on every protocol's client at once; start it
    before the attack, ``result()`` after."""

    def __init__(self, rest_url: str, grpc_target: str, ca_file: Path, frame: bytes) -> None:
        context = multiprocessing.get_context("spawn")
        self._clients: dict[ProtocolName, tuple[Connection, BaseProcess]] = {}
        for protocol in PROTOCOLS:
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(theirs, protocol, rest_url, grpc_target, str(ca_file), frame),
                daemon=True,
            )
            process.start()
            self._clients[protocol] = (mine, process)

    def start(self, seconds: float) -> None:
        for pipe, _ in self._clients.values():
            pipe.send(seconds)

    def result(self, timeout: float = 120.0) -> dict[ProtocolName, Served]:
        served: dict[ProtocolName, Served] = {}
        for protocol, (pipe, _) in self._clients.items():
            if not pipe.poll(timeout):
                raise RuntimeError(f"the well-behaved {protocol} client did not report")
            served[protocol] = pipe.recv()
        return served

    def close(self) -> None:
        for pipe, _ in self._clients.values():
            pipe.send(None)
        for _, process in self._clients.values():
            process.join(10)
            if process.is_alive():
                process.kill()
