"""Closed loops on threads: each client sends its next request as soon as the last one
is answered, for a fixed time; the experiments' concurrent load."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from client.transports import Transport, TransportError


@dataclass(frozen=True)
class Loops:
    """Every answer's latency (ms), the calls that failed, and the seconds taken."""

    latencies: list[float]
    failed: int
    seconds: float


def closed_loops(clients: list[Transport], images: list[bytes], model: str,
                 seconds: float) -> Loops:  # fmt: skip
    """Each client in its own thread for ``seconds``; a failed call is counted and the
    loop goes on (a thread that died would quietly lower the rate)."""
    latencies: list[list[float]] = [[] for _ in clients]
    failed = [0] * len(clients)
    deadline = time.perf_counter() + seconds

    def loop(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            try:
                reply = clients[i].detect(images[n % len(images)], model=model, save=False,
                                          frame_id="")  # fmt: skip
                latencies[i].append(reply.latency_ms)
            except TransportError:
                failed[i] += 1
            n += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(clients))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Loops([ms for mine in latencies for ms in mine], sum(failed),
                 time.perf_counter() - start)  # fmt: skip
