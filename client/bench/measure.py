"""From windows to points: percentiles, the stability rule, paired ratios."""

from __future__ import annotations

import base64
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from client.bench.load import SERVER_STAGES, WindowResult, decode

PERCENTILES = (50, 90, 95, 99)
#: Quantiles kept for the CDF plot (the report is rebuilt from the JSON alone).
CDF_POINTS = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 98, 99, 99.5, 99.9, 100)


@dataclass(frozen=True, slots=True)
class Latency:
    """Milliseconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    mean: float
    sd: float

    @classmethod
    def of(cls, encoded: bytes) -> Latency | None:
        h = decode(encoded)
        if h.get_total_count() == 0:
            return None
        p = {q: h.get_value_at_percentile(q) / 1000 for q in PERCENTILES}
        return cls(p[50], p[90], p[95], p[99], h.get_max_value() / 1000,
                   h.get_mean_value() / 1000, h.get_stddev() / 1000)  # fmt: skip


def window_throughput(window: WindowResult) -> float:
    return window.completed / window.elapsed_s if window.elapsed_s > 0 else 0.0


def window_p95(window: WindowResult) -> float | None:
    latency = Latency.of(window.latency)
    return latency.p95 if latency else None


def is_stable(windows: Sequence[WindowResult], count: int, tolerance: float) -> bool:
    """perf_analyzer's rule: the last ``count`` windows agree within ±``tolerance`` of
    their mean, on throughput and on p95 latency."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    for values in ([window_throughput(w) for w in last], [window_p95(w) for w in last]):
        if any(v is None for v in values):
            if all(v is None for v in values):
                continue  # no answers at all, every time: consistently nothing
            return False
        numbers = [v for v in values if v is not None]
        mean = statistics.fmean(numbers)
        if mean == 0:
            continue
        if any(abs(v - mean) > tolerance * mean for v in numbers):
            return False
    return True


def merge_windows(windows: Sequence[WindowResult]) -> WindowResult:
    merged = WindowResult(windows[0].protocol, 0.0, processes=0)
    total_elapsed = 0.0
    for window in windows:
        total_elapsed += window.elapsed_s
        part = WindowResult(
            window.protocol, 0.0, window.completed, Counter(window.errors), window.late,
            window.dropped, window.bytes_sent, window.bytes_received, window.parse_ms,
            dict(window.server_ms), window.cpu_s, 0, window.latency, window.service,
            window.overhead,
        )  # fmt: skip
        merged.merge(part)
    merged.elapsed_s = total_elapsed
    merged.processes = windows[0].processes
    return merged


def paired_ratio(
    baseline: Sequence[WindowResult], other: Sequence[WindowResult], metric: str
) -> float | None:
    """Median over window pairs (A₁B₁, A₂B₂, …) of other ÷ baseline; pairs ran back to back,
    so drift on the machine cancels out."""
    ratios = []
    for a, b in zip(baseline, other, strict=False):
        if metric == "throughput":
            va, vb = window_throughput(a), window_throughput(b)
        else:
            la, lb = Latency.of(a.latency), Latency.of(b.latency)
            va, vb = (la.p50 if la else 0.0), (lb.p50 if lb else 0.0)
        if va > 0:
            ratios.append(vb / va)
    return statistics.median(ratios) if ratios else None


def cdf(encoded: bytes) -> list[list[float]]:
    h = decode(encoded)
    if h.get_total_count() == 0:
        return []
    return [[q, h.get_value_at_percentile(q) / 1000] for q in CDF_POINTS]


def summarise(
    windows: Sequence[WindowResult],
    *,
    stable: bool,
    encode_ms: float,
    cpu_limit: float,
) -> dict[str, object]:
    """Everything one (protocol, point) reports, from its counted windows."""
    merged = merge_windows(windows)
    done = merged.completed
    latency = Latency.of(merged.latency)
    service = Latency.of(merged.service)
    overhead = Latency.of(merged.overhead)
    per = (lambda total: total / done) if done else (lambda total: 0.0)
    service_mean = service.mean if service else 0.0
    parse = per(merged.parse_ms)
    server = {stage: per(merged.server_ms[stage]) for stage in SERVER_STAGES}
    sent = done + sum(merged.errors.values())
    utilisation = merged.cpu_s / merged.elapsed_s if merged.elapsed_s else 0.0
    return {
        "protocol": merged.protocol,
        "windows": len(windows),
        "stable": stable,
        "throughput": done / merged.elapsed_s if merged.elapsed_s else 0.0,
        "completed": done,
        "latency_ms": _as_dict(latency),
        "service_ms": _as_dict(service),
        "overhead_ms": _as_dict(overhead),
        "errors": dict(merged.errors),
        "error_count": sum(merged.errors.values()),
        "late": merged.late,
        "dropped": merged.dropped,
        "bytes_sent": merged.bytes_sent / done if done else 0.0,
        "bytes_received": merged.bytes_received / done if done else 0.0,
        "client_ms": {
            "encode": encode_ms,
            "send_wait": max(0.0, service_mean - parse),
            "parse": parse,
        },
        "server_ms": server,
        # What is left of the mean service time once the client's parse and the server's
        # own time (queue + pipeline) are taken out: request building, the wire, framing.
        "transport_ms": max(0.0, service_mean - parse - server["total"] - server["queue"]),
        "client_cpu": utilisation,
        "processes": merged.processes,
        "client_bound": utilisation >= cpu_limit * merged.processes
        or (sent > 0 and merged.late / sent > 0.1),
        "cdf": cdf(merged.latency),
        "window_values": [[window_throughput(w), window_p95(w)] for w in windows],
        "histogram": base64.b64encode(merged.latency).decode(),
    }


def _as_dict(latency: Latency | None) -> dict[str, float] | None:
    if latency is None:
        return None
    return {name: getattr(latency, name) for name in Latency.__slots__}
