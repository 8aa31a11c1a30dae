"""Benchmark statistics against hand-computed cases, with no server."""

from __future__ import annotations

import itertools
import statistics

import pytest

from client.bench.load import LATE_AFTER_S, Recorder, Timing, WindowResult, WindowSpec, schedule
from client.bench.measure import Latency, is_stable, merge_windows, paired_ratio
from client.transports import Reply
from facewire.messages import DetectionResult, Model, Timings

pytestmark = pytest.mark.unit


def reply(server_total_ms: float = 1.0) -> Reply:
    result = DetectionResult("0", Model.HAAR, timings=Timings(total=server_total_ms))
    return Reply(result, latency_ms=0.0, bytes_sent=100, bytes_received=10, parse_ms=0.1)


def window(latencies_ms: list[float], elapsed_s: float = 1.0) -> WindowResult:
    rec = Recorder("rest")
    for ms in latencies_ms:
        rec.success(Timing(0.0, 0.0, ms / 1000), reply())
    return rec.result(elapsed_s, cpu_s=0.1)


def test_timing_counts_from_the_intended_send() -> None:
    t = Timing(intended=10.0, sent=10.5, done=10.6)
    assert t.latency_s == pytest.approx(0.6)  # what the user waited
    assert t.service_s == pytest.approx(0.1)  # what the server took
    assert t.late
    assert not Timing(10.0, 10.0 + LATE_AFTER_S / 2, 11.0).late


def test_percentiles_from_the_histogram_match_hand_values() -> None:
    latency = Latency.of(window([float(ms) for ms in range(1, 101)]).latency)
    assert latency is not None
    # HdrHistogram's p50 of 1..100 ms is the 50th value, 50 ms (3 significant digits).
    assert latency.p50 == pytest.approx(50.0, rel=1e-3)
    assert latency.p95 == pytest.approx(95.0, rel=1e-3)
    assert latency.p99 == pytest.approx(99.0, rel=1e-3)
    assert latency.max == pytest.approx(100.0, rel=1e-3)
    assert latency.mean == pytest.approx(50.5, rel=1e-3)
    assert latency.sd == pytest.approx(statistics.pstdev(range(1, 101)), rel=1e-2)


def test_recorder_sums_bytes_errors_and_server_stages() -> None:
    rec = Recorder("grpc")
    rec.success(Timing(0, 0, 0.010), reply(server_total_ms=7.0))
    rec.success(Timing(0, 0, 0.020), reply(server_total_ms=9.0))
    rec.failure(Timing(0, 0, 0.001), "unreachable")
    rec.drop()
    out = rec.result(2.0, cpu_s=0.5)
    assert (out.completed, out.dropped, dict(out.errors)) == (2, 1, {"unreachable": 1})
    assert (out.bytes_sent, out.bytes_received) == (200, 20)
    assert out.server_ms["total"] == pytest.approx(16.0)
    overhead = Latency.of(out.overhead)
    assert overhead is not None
    assert overhead.max == pytest.approx(11.0, rel=1e-3)  # 20 ms seen by the client − 9 ms


def test_stability_rule() -> None:
    steady = [window([10.0] * 50), window([10.5] * 50), window([9.8] * 50)]
    assert is_stable(steady, 3, 0.10)
    assert not is_stable(steady[:2], 3, 0.10)  # too few windows
    spike = [*steady[:2], window([20.0] * 50)]  # p95 doubles in the last window
    assert not is_stable(spike, 3, 0.10)
    slow = [*steady[:2], window([10.0] * 30)]  # throughput drops by 40 %
    assert not is_stable(slow, 3, 0.10)
    assert is_stable(slow, 3, 0.50)  # the tolerance is an option
    assert is_stable([*spike, *steady], 3, 0.10)  # only the last windows count


def test_windows_with_no_answers_are_consistently_empty() -> None:
    empty = [window([]) for _ in range(3)]
    assert is_stable(empty, 3, 0.10)
    assert not is_stable([*empty[:2], window([10.0] * 5)], 3, 0.10)


def test_paired_ratio_is_the_median_of_back_to_back_pairs() -> None:
    a = [window([10.0] * 10), window([20.0] * 10), window([10.0] * 10)]
    b = [window([5.0] * 10), window([10.0] * 10), window([8.0] * 10)]
    assert paired_ratio(a, b, "p50") == pytest.approx(0.5, rel=1e-3)  # ratios .5, .5, .8
    assert paired_ratio(a, a, "throughput") == 1.0


def test_merging_windows_adds_counts_and_histograms() -> None:
    merged = merge_windows([window([10.0] * 10, 1.0), window([30.0] * 30, 2.0)])
    assert merged.completed == 40
    assert merged.elapsed_s == 3.0
    latency = Latency.of(merged.latency)
    assert latency is not None
    assert latency.p50 == pytest.approx(30.0, rel=1e-3)


def test_open_loop_schedules() -> None:
    spec = WindowSpec("rest", "haar", None, rate=20.0, duration_s=2.0)
    times = schedule(spec, start=100.0)
    assert len(times) == 40
    assert times[:3] == [100.0, 100.05, 100.1]
    poisson = WindowSpec("rest", "haar", None, rate=20.0, duration_s=50.0, arrivals="poisson")
    a, b = schedule(poisson, 0.0), schedule(poisson, 0.0)
    assert a == b  # seeded: reproducible
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 20, rel=0.1)
    assert statistics.pstdev(gaps) == pytest.approx(1 / 20, rel=0.15)  # exponential: sd = mean


def test_processes_sharing_a_constant_rate_interleave() -> None:
    from client.bench.runner import LoadPool

    pool = LoadPool.__new__(LoadPool)  # only the splitting logic: no processes needed
    pool.size = 2
    whole = WindowSpec("rest", "haar", None, rate=20.0, duration_s=1.0, max_inflight=8)
    shares = pool._split(whole)
    merged = sorted(t for share in shares if share for t in schedule(share, 0.0))
    assert merged == pytest.approx([n / 20 for n in range(20)])  # evenly spaced, no bursts
    assert sum(share.max_inflight for share in shares if share) == 8


def test_a_stall_shows_in_p99_when_latency_counts_from_the_intended_send() -> None:
    """Coordinated omission by hand: 20 requests/s for 10 s, and the server stalls for 1 s.

    A closed-loop client sends nothing while it waits, so only one request sees the stall;
    counted from the intended send times, every request scheduled during the stall does.
    """
    rate, stall_start, stall = 20.0, 5.0, 1.0
    rec = Recorder("rest")
    busy_until = 0.0
    for n in range(int(rate * 10)):
        intended = n / rate
        sent = max(intended, busy_until)  # one connection: waits for the previous answer
        service = 0.010 + (stall if stall_start <= sent < stall_start + 0.05 else 0.0)
        done = sent + service
        busy_until = done
        rec.success(Timing(intended, sent, done), reply())
    out = rec.result(10.0, cpu_s=0.0)
    latency, service_time = Latency.of(out.latency), Latency.of(out.service)
    assert latency is not None
    assert service_time is not None
    assert service_time.p99 < 20  # service time alone hides the stall below p99...
    assert latency.p99 > 500  # ...latency from the intended send shows it
    assert out.late >= rate * stall * 0.9  # and the sends it pushed back are counted late


def test_request_budgets_go_only_to_processes_with_work() -> None:
    from client.bench.runner import LoadPool

    pool = LoadPool.__new__(LoadPool)  # only the splitting logic: no processes needed
    pool.size = 2
    closed = WindowSpec("rest", "haar", 1, rate=None, duration_s=None, requests=20)
    shares = pool._split(closed)
    assert [s.requests if s else None for s in shares] == [20, None]
    opened = WindowSpec("rest", "haar", None, rate=10.0, duration_s=1.0, max_inflight=1)
    (only, idle) = pool._split(opened)
    assert idle is None
    assert only is not None
    assert (only.rate, only.max_inflight) == (10.0, 1)  # the cap stays the cap
