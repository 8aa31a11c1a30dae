"""Live per-protocol statistics: a sliding latency window, real throughput, errors."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

WINDOW = 300  # responses in the sliding window
THROUGHPUT_SECONDS = 5.0
WARMUP = 3  # responses after (re)activation that are shown but not counted
SPARKLINE = 120  # latencies kept for the sparkline


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: list[float] | deque[float]) -> Percentiles | None:
        if not values:
            return None
        p50, p95, p99 = np.percentile(np.fromiter(values, float), [50, 95, 99])
        return cls(float(p50), float(p95), float(p99))


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What one protocol's card shows; immutable, so the renderer needs no lock."""

    count: int = 0
    last_ms: float | None = None
    latency: Percentiles | None = None
    server_ms: Percentiles | None = None
    overhead: Percentiles | None = None
    throughput: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    errors: int = 0
    last_error: str = ""
    state: str = "idle"
    sparkline: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Summary:
    """The whole session since the last reset, for the table printed on quit."""

    protocol: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    throughput: float
    errors: int


@dataclass
class ProtocolStats:
    """Thread-safe: a worker records, the GUI snapshots. ``clock`` is injectable for tests."""

    protocol: str
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._clear()
        self.state = "idle"

    def _clear(self) -> None:
        self._latency: deque[float] = deque(maxlen=WINDOW)
        self._server: deque[float] = deque(maxlen=WINDOW)
        self._overhead: deque[float] = deque(maxlen=WINDOW)
        self._done_at: deque[float] = deque()
        self._spark: deque[float] = deque(maxlen=SPARKLINE)
        self._all: list[float] = []
        self._last: float | None = None
        self._bytes = (0, 0)
        self._errors = 0
        self._last_error = ""
        self._warmup = WARMUP
        self._started: float | None = None
        self._active_seconds = 0.0

    def reset(self) -> None:
        """Forget everything measured (the ``r`` key); the connection state stays."""
        with self._lock:
            active = self._started is not None
            self._clear()
            if active:
                self._started = self.clock()

    def activate(self) -> None:
        """The protocol starts being measured: the next responses are warm-up."""
        with self._lock:
            self._warmup = WARMUP
            if self._started is None:
                self._started = self.clock()
                self._done_at.clear()  # answers from an earlier activation are not "recent"

    def deactivate(self) -> None:
        with self._lock:
            if self._started is not None:
                self._active_seconds += self.clock() - self._started
                self._started = None
            self.state = "idle"

    def record(
        self, latency_ms: float, server_ms: float, bytes_sent: int, bytes_received: int
    ) -> None:
        with self._lock:
            self.state = "connected"
            self._bytes = (bytes_sent, bytes_received)
            self._last = latency_ms
            self._spark.append(latency_ms)
            if self._warmup > 0:
                self._warmup -= 1
                return
            now = self.clock()
            self._latency.append(latency_ms)
            self._server.append(server_ms)
            self._overhead.append(latency_ms - server_ms)
            self._done_at.append(now)
            self._all.append(latency_ms)

    def record_error(self, state: str, message: str) -> None:
        with self._lock:
            self.state = state
            self._errors += 1
            self._last_error = message

    def set_state(self, state: str) -> None:
        with self._lock:
            self.state = state

    def _throughput(self, now: float) -> float:
        while self._done_at and self._done_at[0] < now - THROUGHPUT_SECONDS:
            self._done_at.popleft()
        if not self._done_at or self._started is None:
            return 0.0
        span = min(THROUGHPUT_SECONDS, now - self._started)
        return len(self._done_at) / span if span > 0 else 0.0

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                count=len(self._all),
                last_ms=self._last,
                latency=Percentiles.of(self._latency),
                server_ms=Percentiles.of(self._server),
                overhead=Percentiles.of(self._overhead),
                throughput=self._throughput(self.clock()),
                bytes_sent=self._bytes[0],
                bytes_received=self._bytes[1],
                errors=self._errors,
                last_error=self._last_error,
                state=self.state,
                sparkline=tuple(self._spark),
            )

    def summary(self) -> Summary:
        with self._lock:
            active = self._active_seconds
            if self._started is not None:
                active += self.clock() - self._started
            overall = Percentiles.of(self._all)
            return Summary(
                protocol=self.protocol,
                count=len(self._all),
                p50=overall.p50 if overall else None,
                p95=overall.p95 if overall else None,
                p99=overall.p99 if overall else None,
                throughput=len(self._all) / active if active > 0 else 0.0,
                errors=self._errors,
            )
