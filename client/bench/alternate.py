"""Requests that take turns: one to each client in rotating order, so that all of them
meet the same moments of a shared machine. Separate windows of each differ by more than
the tenths of a millisecond this can resolve (docs/performance.md); paired requests do
not, and the median of their differences comes with a distribution-free interval.

``make docker-bench`` compares ways of running the services this way, and ``make
claims`` compares protocols and payload forms.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from client.transports import Transport, TransportError

#: Requests to each client before the counted ones (connections, caches, threads).
WARMUP = 20


@dataclass
class Alternated:
    """Per client: each counted request's latency (ms) and payload bytes each way."""

    times: dict[str, list[float]] = field(default_factory=dict)
    sent: dict[str, list[int]] = field(default_factory=dict)
    received: dict[str, list[int]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    def p50(self, name: str) -> float:
        return statistics.median(self.times[name])

    def difference(self, name: str, baseline: str) -> tuple[float, float, float]:
        """Median of ``name``'s per-request latency minus ``baseline``'s, with its 95 %
        interval (the pairs are the rounds both answered)."""
        deltas = [a - b for a, b in zip(self.times[name], self.times[baseline], strict=True)]
        return median_ci(deltas)


def alternate(
    clients: Mapping[str, Transport],
    frames: Sequence[bytes],
    model: str,
    requests: int,
    warmup: int = WARMUP,
) -> Alternated:
    """``requests`` rounds (after ``warmup``), one request to every client per round,
    frames in turn. Only whole rounds count, so every client's lists pair up."""
    names = list(clients)
    out = Alternated({n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names})
    for i in range(warmup + requests):
        k = i % len(names)
        frame = frames[i % len(frames)]
        this_round = {}
        for name in names[k:] + names[:k]:
            try:
                reply = clients[name].detect(frame, model=model, save=False, frame_id=str(i))
            except TransportError as error:
                out.errors[f"{name} {error.kind}"] += 1
                continue
            this_round[name] = reply
        if i >= warmup and len(this_round) == len(names):
            for name, reply in this_round.items():
                out.times[name].append(reply.latency_ms)
                out.sent[name].append(reply.bytes_sent)
                out.received[name].append(reply.bytes_received)
    return out


def median_ci(values: list[float]) -> tuple[float, float, float]:
    """The median with a distribution-free 95 % confidence interval (binomial order
    statistics: ranks n/2 ± 1.96 √n / 2)."""
    ordered = sorted(values)
    n = len(ordered)
    half = 1.96 * math.sqrt(n) / 2
    low, high = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))
    return statistics.median(ordered), ordered[low], ordered[high]
