"""Every outcome of a soak, interval by interval, and the saves it was answered."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from client.bench.load import new_histogram
from client.processes import Child


@dataclass
class Interval:
    """What happened in one reporting interval, by traffic kind."""

    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, HdrHistogram] = field(default_factory=lambda: defaultdict(new_histogram))
    rss_mib: dict[str, float] = field(default_factory=dict)

    def row(self, start_s: float) -> dict[str, Any]:
        return {
            "t_s": start_s,
            "sent": dict(self.sent),
            "answered": dict(self.answered),
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "p50_ms": {k: h.get_value_at_percentile(50) / 1000 for k, h in self.latency.items()},
            "p99_ms": {k: h.get_value_at_percentile(99) / 1000 for k, h in self.latency.items()},
            "rss_mib": self.rss_mib,
        }


class Ledger:
    """Every outcome, by interval, plus the saves that were answered (thread-safe)."""

    def __init__(self, start: float, interval_s: float) -> None:
        self.start = start
        self.interval_s = interval_s
        self.intervals: list[Interval] = []
        self.saves: dict[str, str] = {}  # saved image name -> frame_id, for answered saves
        self.saves_sent = 0
        self.saves_unanswered = 0  # a timeout or a lost connection: stored or not, unknown
        self._lock = threading.Lock()

    def _at(self, when: float) -> Interval:
        index = max(0, int((when - self.start) / self.interval_s))
        while len(self.intervals) <= index:
            self.intervals.append(Interval())
        return self.intervals[index]

    def record(
        self, kind: str, due: float, error: str | None, saved: tuple[str, str] | None
    ) -> None:
        done = time.perf_counter()
        with self._lock:
            interval = self._at(due)
            interval.sent[kind] += 1
            if error is None:
                interval.answered[kind] += 1
                interval.latency[kind].record_value(max(1, int((done - due) * 1e6)))
            else:
                interval.errors[kind][error] += 1
            if saved is not None:
                self.saves[saved[0]] = saved[1]

    def count_save(self, answered: bool) -> None:
        with self._lock:
            self.saves_sent += 1
            self.saves_unanswered += not answered

    def sample_memory(self, services: dict[str, Child]) -> None:
        with self._lock:
            interval = self._at(time.perf_counter())
            interval.rss_mib = {name: child.rss_mib() for name, child in services.items()}
