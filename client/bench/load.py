"""Generates load for one window, in a worker process; closed or open loop.

Each worker process owns its transports (one connection per thread, kept across
windows) and sends the run's pre-encoded frames in the same order for every protocol.
Latencies go into lossless HdrHistograms (microseconds), shipped back encoded.
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from hdrh.histogram import HdrHistogram

from client.transports import ProtocolName, Reply, Transport, TransportError, make_transport

LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3  # 1 µs to 10 min, 3 significant digits
#: A send later than this after its intended time counts as late: well above Python's
#: 5 ms thread switch interval, so that ordinary scheduling jitter is not "late".
LATE_AFTER_S = 0.010
#: After an unreachable server, a closed-loop thread pauses this long before retrying,
#: instead of spinning on instant connection errors.
RETRY_AFTER_UNREACHABLE_S = 0.05
SERVER_STAGES = ("queue", "decode", "preprocess", "detect", "save", "total")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    protocol: ProtocolName
    model: str
    #: Closed loop: requests kept in flight (this process's share). None for open loop.
    concurrency: int | None
    #: Open loop: requests per second (this process's share). None for closed loop.
    rate: float | None
    arrivals: str = "constant"
    max_inflight: int = 64
    duration_s: float | None = 2.0
    requests: int | None = None
    seed: int = 1
    #: Index of the first frame: every protocol walks the frames in the same order.
    first_frame: int = 0
    #: Open loop: when this process's first send is due, so that N processes sharing a
    #: constant rate interleave evenly instead of sending in bursts of N.
    offset_s: float = 0.0


@dataclass(slots=True)
class Timing:
    """When one request was meant to go, went, and came back (perf_counter seconds)."""

    intended: float
    sent: float
    done: float

    @property
    def latency_s(self) -> float:
        """From the intended send: the user's view, which hides no coordinated omission."""
        return self.done - self.intended

    @property
    def service_s(self) -> float:
        """From the actual send: what the server and the network took."""
        return self.done - self.sent

    @property
    def late(self) -> bool:
        return self.sent - self.intended > LATE_AFTER_S


@dataclass
class WindowResult:
    protocol: str
    elapsed_s: float
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0
    dropped: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    parse_ms: float = 0.0  # sums over completed requests
    server_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SERVER_STAGES, 0.0))
    cpu_s: float = 0.0
    processes: int = 1
    #: Encoded HdrHistograms (µs): latency from intended send, service time, and overhead
    #: (service time minus the server's own time, its queue included).
    latency: bytes = b""
    service: bytes = b""
    overhead: bytes = b""

    def merge(self, other: WindowResult) -> None:
        """Add another process's part of the same window."""
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.completed += other.completed
        self.errors.update(other.errors)
        self.late += other.late
        self.dropped += other.dropped
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.parse_ms += other.parse_ms
        for stage in SERVER_STAGES:
            self.server_ms[stage] += other.server_ms[stage]
        self.cpu_s += other.cpu_s
        self.processes += other.processes
        self.latency = merge_encoded(self.latency, other.latency)
        self.service = merge_encoded(self.service, other.service)
        self.overhead = merge_encoded(self.overhead, other.overhead)


def merge_encoded(*encoded: bytes) -> bytes:
    histogram = new_histogram()
    for part in encoded:
        if part:
            histogram.decode_and_add(part)
    return bytes(histogram.encode())


def decode(encoded: bytes) -> HdrHistogram:
    histogram = new_histogram()
    if encoded:
        histogram.decode_and_add(encoded)
    return histogram


class Recorder:
    """Thread-safe collection for one window; histograms are filled once, at the end."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self._lock = threading.Lock()
        self._timings: list[tuple[Timing, Reply]] = []
        self.errors: Counter[str] = Counter()
        self.late = 0
        self.dropped = 0

    def success(self, timing: Timing, reply: Reply) -> None:
        with self._lock:
            self._timings.append((timing, reply))
            self.late += timing.late

    def failure(self, timing: Timing, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            self.late += timing.late

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def result(self, elapsed_s: float, cpu_s: float) -> WindowResult:
        latency, service, overhead = new_histogram(), new_histogram(), new_histogram()
        out = WindowResult(self.protocol, elapsed_s, cpu_s=cpu_s)
        for timing, reply in self._timings:
            t = reply.result.timings
            latency.record_value(max(1, round(timing.latency_s * 1e6)))
            service.record_value(max(1, round(timing.service_s * 1e6)))
            overhead.record_value(max(1, round((timing.service_s * 1e3 - t.in_server) * 1e3)))
            out.bytes_sent += reply.bytes_sent
            out.bytes_received += reply.bytes_received
            out.parse_ms += reply.parse_ms
            for stage in SERVER_STAGES:
                out.server_ms[stage] += getattr(t, stage)
        out.completed = len(self._timings)
        out.errors, out.late, out.dropped = self.errors, self.late, self.dropped
        out.latency, out.service = bytes(latency.encode()), bytes(service.encode())
        out.overhead = bytes(overhead.encode())
        return out


class LoadProcess:
    """The state of one worker process: frames, and transports kept between windows."""

    def __init__(
        self,
        frames: list[bytes],
        rest_url: str,
        grpc_target: str,
        new_connection: bool = False,
        ca_file: str | None = None,
    ) -> None:
        self.frames = frames
        self.rest_url, self.grpc_target = rest_url, grpc_target
        self.new_connection = new_connection
        self.ca_file = ca_file
        self._transports: dict[tuple[str, int], Transport] = {}

    def transport(self, protocol: ProtocolName, slot: int) -> Transport:
        key = (protocol, slot)
        if key not in self._transports:
            self._transports[key] = make_transport(
                protocol, self.rest_url, self.grpc_target, ca_file=self.ca_file,
                new_connection=self.new_connection,
            )  # fmt: skip
        return self._transports[key]

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()

    def _send(
        self, spec: WindowSpec, slot: int, index: int, intended: float, rec: Recorder
    ) -> str | None:
        """One request; returns the error kind when it failed."""
        transport = self.transport(spec.protocol, slot)
        frame = self.frames[index % len(self.frames)]
        sent = time.perf_counter()
        kind: str
        try:
            reply = transport.detect(frame, model=spec.model, save=False, frame_id=str(index))
        except TransportError as error:
            kind = error.kind
        except Exception:  # a client-side bug must be counted, not kill the thread
            kind = "client_error"
        else:
            rec.success(Timing(intended, sent, time.perf_counter()), reply)
            return None
        rec.failure(Timing(intended, sent, time.perf_counter()), kind)
        return kind

    def run(self, spec: WindowSpec) -> WindowResult:
        # Every connection this window may use exists before the clock starts: building an
        # HTTP client costs ~20 ms, which must never land in a measured request.
        slots = spec.concurrency if spec.concurrency is not None else spec.max_inflight
        for slot in range(slots):
            self.transport(spec.protocol, slot)
        cpu_before = time.process_time()
        start = time.perf_counter()
        rec = Recorder(spec.protocol)
        if spec.concurrency is not None:
            self._closed_loop(spec, rec, start)
        else:
            self._open_loop(spec, rec, start)
        # Until the last answer: an open loop's achieved rate is what it got, drain
        # included, not what it offered.
        elapsed = time.perf_counter() - start
        return rec.result(elapsed, time.process_time() - cpu_before)

    def _closed_loop(self, spec: WindowSpec, rec: Recorder, start: float) -> None:
        assert spec.concurrency is not None
        deadline = start + spec.duration_s if spec.duration_s is not None else float("inf")
        counter = itertools.count(spec.first_frame)
        budget = spec.requests
        lock = threading.Lock()

        def take() -> int | None:
            nonlocal budget
            with lock:
                if time.perf_counter() >= deadline or budget == 0:
                    return None
                if budget is not None:
                    budget -= 1
                return next(counter)

        def loop(slot: int) -> None:
            while (index := take()) is not None:
                kind = self._send(spec, slot, index, time.perf_counter(), rec)  # intended = now
                if kind == "unreachable":
                    time.sleep(RETRY_AFTER_UNREACHABLE_S)  # a retry pause, not synchronisation

        _run_threads(loop, spec.concurrency)

    def _open_loop(self, spec: WindowSpec, rec: Recorder, start: float) -> None:
        assert spec.rate is not None
        jobs: queue.SimpleQueue[tuple[int, float] | None] = queue.SimpleQueue()
        in_flight = threading.BoundedSemaphore(spec.max_inflight)

        def worker(slot: int) -> None:
            while (job := jobs.get()) is not None:
                index, intended = job
                try:
                    self._send(spec, slot, index, intended, rec)
                finally:
                    in_flight.release()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(spec.max_inflight)]  # fmt: skip
        for thread in threads:
            thread.start()
        for n, intended in enumerate(schedule(spec, start)):
            wait = intended - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # pacing the schedule, not synchronisation
            if in_flight.acquire(blocking=False):
                jobs.put((spec.first_frame + n, intended))
            else:
                rec.drop()  # every slot busy: counted, never silently skipped
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()


def schedule(spec: WindowSpec, start: float) -> list[float]:
    """Intended send times: evenly spaced, or a seeded Poisson process."""
    assert spec.rate is not None
    count = spec.requests
    if count is None:
        assert spec.duration_s is not None
        count = max(1, round(spec.rate * spec.duration_s))
    start += spec.offset_s
    if spec.arrivals == "poisson":
        rng = random.Random(spec.seed)  # noqa: S311 (a reproducible schedule, not a secret)
        times, t = [], start
        for _ in range(count):
            t += rng.expovariate(spec.rate)
            times.append(t)
        return times
    return [start + n / spec.rate for n in range(count)]


def _run_threads(target: object, count: int) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def serve(
    conn: Connection,
    frames: list[bytes],
    rest_url: str,
    grpc_target: str,
    new_connection: bool = False,
    ca_file: str | None = None,
) -> None:
    """A worker process's main loop: run each WindowSpec received, send back the result."""
    process = LoadProcess(frames, rest_url, grpc_target, new_connection, ca_file)
    try:
        while (spec := conn.recv()) is not None:
            conn.send(process.run(spec))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # Ctrl-C reaches every process; the coordinator reports it, once
    finally:
        process.close()
        conn.close()
