"""``make soak``: both services under mixed traffic for a long time, then an audit.

``python -m client.bench.soak [--duration 600] [--interval 10] [--out soak-results]``
starts both services on free loopback ports and sends, open loop at fixed rates:
every protocol (REST, gRPC unary and stream, both Open Inference Protocol ones), a part
of it saving frames, and a trickle of hostile requests (corrupt, random, oversized,
unknown model) that must be refused with a clear error. Each interval it records the
requests sent and answered, the errors by kind, p50/p99 latency (measured from each
request's intended send time, so a stall is not hidden) and each service's resident
memory. At the end it drains the services and audits the storage folder: every
answered save must have exactly one row and one complete image, every row a complete
image. It writes ``soak.json``, ``soak.md`` and ``soak.png`` into ``--out`` and exits
1 if anything was lost, duplicated, torn, answered wrongly, or if memory kept growing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table

from client.bench.load import new_histogram
from client.bench.processes import Child, facewire_services
from client.transports import ALL_PROTOCOLS, ProtocolName, TransportError, make_transport
from facewire.audit import audit
from facewire.settings import MiB

ROOT = Path(__file__).resolve().parents[2]
FRAMES = [
    ROOT / "tests" / "fixtures" / name for name in ("face_1280x720.jpg", "noface_1280x720.jpg")
]
HOSTILE = "hostile"
#: The second half's peak resident memory may exceed the first half's by this factor and
#: this many MiB; more fails the soak as a leak. (The plot shows the whole curve.)
MEMORY_GROWTH_LIMIT = 1.1
MEMORY_SLACK_MIB = 48.0


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


def error_label(error: TransportError) -> str:
    """A short, fixed label: 'HTTP 413', 'INVALID_ARGUMENT', 'timeout', 'unreachable'."""
    if error.kind == "rejected":
        return error.message.split(":", 1)[0]
    return error.kind


#: What a hostile request may get: a refusal that names the client's mistake.
EXPECTED_REFUSALS = {"HTTP 400", "HTTP 404", "HTTP 413", "HTTP 415", "HTTP 422"} | {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
}


def hostile_inputs(face: bytes, rng: random.Random) -> list[tuple[str, bytes, str]]:
    """(name, body, model): each must be refused; none may crash or hang a service."""
    return [
        ("truncated JPEG", face[: len(face) // 3], "haar"),
        ("random bytes", rng.randbytes(50_000), "haar"),
        ("oversized upload", rng.randbytes(9 * MiB), "haar"),
        ("unknown model", face, "no-such-model"),
        ("empty body", b"", "haar"),
    ]


def schedule(
    start: float, rate: float, phase: float, stop: threading.Event
) -> Iterator[tuple[int, float]]:
    """(n, due time) for the n-th request at ``rate`` per second, ``phase`` periods in,
    each yielded once its time has come; ends when ``stop`` is set."""
    for n in itertools.count():
        due = start + (n + phase) / rate
        if stop.wait(max(0.0, due - time.perf_counter())):
            return
        yield n, due


def traffic(
    protocol: ProtocolName,
    rate: float,
    phase: float,
    save_every: int,
    frames: list[bytes],
    urls: tuple[str, str],
    ledger: Ledger,
    stop: threading.Event,
) -> None:
    """One stream of requests at ``rate`` per second, open loop: each is due at a fixed
    time, and its latency runs from then, however late the previous answer was.
    ``phase`` (a fraction of the period) staggers the streams, so that they interleave
    instead of all arriving at once."""
    transport = make_transport(protocol, *urls)
    try:
        for n, due in schedule(ledger.start, rate, phase, stop):
            save = save_every > 0 and n % save_every == save_every - 1
            frame_id = f"soak-{protocol}-{n}"
            error, saved = None, None
            try:
                reply = transport.detect(
                    frames[n % len(frames)], model="haar", save=save, frame_id=frame_id
                )
            except TransportError as exc:
                error = error_label(exc)
            else:
                if save:
                    saved = (reply.result.saved_image or "", frame_id)
            if save:
                ledger.count_save(answered=error is None)
            ledger.record(protocol, due, error, saved)
    finally:
        transport.close()


def hostile_traffic(
    rate: float, face: bytes, urls: tuple[str, str], ledger: Ledger, stop: threading.Event
) -> None:
    """Bad requests at ``rate`` per second, alternately to each service."""
    rng = random.Random(7)  # noqa: S311 (test data, not secrets)
    inputs = hostile_inputs(face, rng)
    transports = {p: make_transport(p, *urls) for p in ("rest", "grpc")}
    try:
        # Half a period in: between the other streams' arrivals.
        for n, due in schedule(ledger.start, rate, 0.5, stop):
            _, body, model = inputs[n % len(inputs)]
            transport = transports["rest" if n % 2 else "grpc"]
            try:
                transport.detect(body, model=model, save=False, frame_id=f"hostile-{n}")
            except TransportError as exc:
                label = error_label(exc)
                ok = label in EXPECTED_REFUSALS
                ledger.record(HOSTILE, due, None if ok else f"unexpected {label}", None)
            else:
                ledger.record(HOSTILE, due, "answered a bad request", None)
    finally:
        for transport in transports.values():
            transport.close()


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float
    interval_s: float
    rate: float  # requests per second per protocol
    hostile_rate: float
    save_every: int
    out: Path


def run(config: SoakConfig, console: Console) -> dict[str, Any]:
    workdir = config.out
    workdir.mkdir(parents=True, exist_ok=True)
    frames = [path.read_bytes() for path in FRAMES]
    shutil.rmtree(workdir / "storage", ignore_errors=True)  # the audit is of this run only
    stop = threading.Event()
    with facewire_services(workdir) as (url, target, rest, grpc_child):
        services = {"rest": rest, "grpc": grpc_child}
        ledger = Ledger(time.perf_counter() + 0.5, config.interval_s)
        threads = [
            threading.Thread(
                target=traffic,
                args=(
                    p,
                    config.rate,
                    i / len(ALL_PROTOCOLS),
                    config.save_every,
                    frames,
                    (url, target),
                    ledger,
                    stop,
                ),
                name=f"soak-{p}",
            )
            for i, p in enumerate(ALL_PROTOCOLS)
        ]
        threads.append(
            threading.Thread(
                target=hostile_traffic,
                args=(config.hostile_rate, frames[0], (url, target), ledger, stop),
                name="soak-hostile",
            )
        )
        for thread in threads:
            thread.start()
        end = ledger.start + config.duration_s
        reported = 0
        for k in itertools.count():
            # Memory is sampled mid-interval: one sample in each, however the loop drifts.
            sample_at = min(end, ledger.start + (k + 0.5) * config.interval_s)
            if stop.wait(max(0.0, sample_at - time.perf_counter())):
                break
            ledger.sample_memory(services)
            for index in range(reported, len(ledger.intervals) - 1):
                console.print(progress_line(ledger, index))
                reported = index + 1
            if time.perf_counter() >= end:
                stop.set()
        for thread in threads:
            thread.join()
        ledger.sample_memory(services)
        exit_codes = {"rest": rest.stop(), "grpc": grpc_child.stop()}
    return report(config, ledger, exit_codes, workdir / "storage")


def progress_line(ledger: Ledger, index: int) -> str:
    interval = ledger.intervals[index]
    row = interval.row(index * ledger.interval_s)
    p99 = " ".join(f"{k} {v:.0f}" for k, v in sorted(row["p99_ms"].items()) if k != HOSTILE)
    errors = sum(sum(c.values()) for k, c in interval.errors.items())
    rss = " ".join(f"{k} {v:.0f}" for k, v in interval.rss_mib.items())
    return (
        f"[{index * ledger.interval_s:6.0f} s] sent {sum(interval.sent.values()):5d}  "
        f"errors {errors:3d}  p99 ms: {p99}  RSS MiB: {rss}"
    )


def report(
    config: SoakConfig, ledger: Ledger, exit_codes: dict[str, int], storage: Path
) -> dict[str, Any]:
    intervals = [i.row(n * config.interval_s) for n, i in enumerate(ledger.intervals)]
    totals: dict[str, dict[str, Any]] = {}
    for kind in [*ALL_PROTOCOLS, HOSTILE]:
        errors: Counter[str] = Counter()
        latency = new_histogram()
        for interval in ledger.intervals:
            errors.update(interval.errors.get(kind, Counter()))
            if kind in interval.latency:
                latency.add(interval.latency[kind])
        totals[kind] = {
            "sent": sum(i.sent[kind] for i in ledger.intervals),
            "answered": sum(i.answered[kind] for i in ledger.intervals),
            "errors": dict(errors),
            "p50_ms": latency.get_value_at_percentile(50) / 1000,
            "p99_ms": latency.get_value_at_percentile(99) / 1000,
            "max_ms": latency.get_max_value() / 1000,
        }
    found = audit(storage)
    rows = {row["image"]: row["frame_id"] for row in found.rows}
    lost = sorted(name for name in ledger.saves if name not in rows)
    wrong_frame = sorted(n for n, fid in ledger.saves.items() if n in rows and rows[n] != fid)
    frame_ids = Counter(row["frame_id"] for row in found.rows)
    duplicated = sorted(fid for fid, count in frame_ids.items() if count > 1)
    stored_unanswered = len(rows) - (len(ledger.saves) - len(lost))
    memory = memory_growth(intervals)
    failures = []
    for kind, total in totals.items():
        if total["errors"]:
            failures.append(f"{kind}: errors {total['errors']}")
    if lost or wrong_frame or duplicated or found.problems or found.orphans:
        failures.append("records lost, duplicated or damaged")
    if stored_unanswered > ledger.saves_unanswered:
        failures.append(f"{stored_unanswered} rows no save request can explain")
    if any(code != 0 for code in exit_codes.values()):
        failures.append(f"exit codes {exit_codes}")
    for service, ratio in memory["ratio"].items():
        if leaked(memory, service):
            failures.append(f"{service} memory grew {ratio:.2f}x from the first half's peak")
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "totals": totals,
        "requests": {
            "sent": sum(t["sent"] for t in totals.values()),
            "answered": sum(t["answered"] for t in totals.values()),
        },
        "records": {
            "saves_sent": ledger.saves_sent,
            "saves_answered": len(ledger.saves),
            "rows": len(found.rows),
            "images": found.images,
            "lost": lost,
            "duplicated": duplicated,
            "wrong_frame_id": wrong_frame,
            "stored_but_unanswered": stored_unanswered,
            "audit_problems": found.problems,
            "orphans": found.orphans,
            "unfinished": found.unfinished,
        },
        "memory": memory,
        "exit_codes": exit_codes,
        "intervals": intervals,
        "failures": failures,
        "passed": not failures,
    }


def memory_growth(intervals: list[dict[str, Any]]) -> dict[str, Any]:
    """Each service's resident memory: the most it held in the first half of the run
    (after its first interval, while pools and caches fill) and in the second half. A
    leak raises the second; a single moment's work (an oversized upload being read)
    moves either by tens of MiB, hence the allowance in ``leaked``."""
    samples: dict[str, list[float]] = defaultdict(list)
    for interval in intervals:
        for service, mib in interval["rss_mib"].items():
            samples[service].append(mib)
    first = {s: max(v[1 : max(2, len(v) // 2)]) for s, v in samples.items() if len(v) > 2}
    second = {s: max(samples[s][len(samples[s]) // 2 :]) for s in first}
    return {
        "first_half_max_mib": first,
        "second_half_max_mib": second,
        "max_mib": {s: max(v) for s, v in samples.items() if v},
        "ratio": {s: second[s] / first[s] for s in first},
    }


def leaked(memory: dict[str, Any], service: str) -> bool:
    """Whether the second half's peak is past what the first half's peak allows."""
    first = memory["first_half_max_mib"][service]
    return bool(
        memory["second_half_max_mib"][service] > first * MEMORY_GROWTH_LIMIT + MEMORY_SLACK_MIB
    )


def print_summary(result: dict[str, Any], console: Console) -> None:
    table = Table(title="soak: totals")
    for column in ("traffic", "sent", "answered", "errors", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in ("traffic", "errors") else "right")
    for kind, total in result["totals"].items():
        errors = ", ".join(f"{k} {v}" for k, v in total["errors"].items()) or "none"
        table.add_row(
            kind,
            str(total["sent"]),
            str(total["answered"]),
            errors,
            f"{total['p50_ms']:.1f}",
            f"{total['p99_ms']:.1f}",
            f"{total['max_ms']:.1f}",
        )
    console.print(table)
    records = result["records"]
    console.print(
        f"saves: {records['saves_sent']} sent, {records['saves_answered']} answered, "
        f"{records['rows']} rows, {records['images']} images; lost {len(records['lost'])}, "
        f"duplicated {len(records['duplicated'])}, audit problems {len(records['audit_problems'])}"
    )
    memory = result["memory"]
    for service, ratio in memory["ratio"].items():
        console.print(
            f"{service}: peak RSS {memory['first_half_max_mib'][service]:.0f} MiB in the "
            f"first half, {memory['second_half_max_mib'][service]:.0f} MiB in the second "
            f"({ratio:.3f}x)"
        )
    verdict = (
        "[green]PASSED[/]"
        if result["passed"]
        else "[red]FAILED[/]: " + "; ".join(result["failures"])
    )
    console.print(f"soak {verdict}")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Soak of {result['config']['duration_s']:.0f} s: "
        f"{result['requests']['sent']} requests sent, "
        f"{result['requests']['answered']} answered as expected.",
        "",
        "| traffic | sent | answered | errors | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for kind, t in result["totals"].items():
        errors = ", ".join(f"{k} {v}" for k, v in t["errors"].items()) or "none"
        lines.append(
            f"| {kind} | {t['sent']} | {t['answered']} | {errors} | {t['p50_ms']:.1f} | "
            f"{t['p99_ms']:.1f} | {t['max_ms']:.1f} |"
        )
    r = result["records"]
    m = result["memory"]
    lines += [
        "",
        f"Saves: {r['saves_sent']} sent, {r['saves_answered']} answered; {r['rows']} rows and "
        f"{r['images']} images stored; lost {len(r['lost'])}, duplicated {len(r['duplicated'])}, "
        f"audit problems {len(r['audit_problems'])}, images without a row {len(r['orphans'])}.",
        "",
        "Peak resident memory (MiB), first half → second half: "
        + ", ".join(
            f"{s} {m['first_half_max_mib'][s]:.0f} → {m['second_half_max_mib'][s]:.0f} "
            f"({m['ratio'][s]:.3f}×)"
            for s in m["ratio"]
        )
        + ".",
        "",
        "Verdict: "
        + ("passed." if result["passed"] else "FAILED: " + "; ".join(result["failures"])),
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = result["intervals"]
    times = [i["t_s"] / 60 for i in intervals]
    figure, (latency, memory) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for kind in ALL_PROTOCOLS:
        latency.plot(times, [i["p99_ms"].get(kind) for i in intervals], label=kind)
    latency.set_ylabel("p99 latency (ms)")
    latency.set_yscale("log")
    latency.legend(fontsize="small", ncol=3)
    latency.set_title("soak: p99 per interval, and resident memory of each service")
    for service in ("rest", "grpc"):
        memory.plot(times, [i["rss_mib"].get(service) for i in intervals], label=service)
    memory.set_ylabel("resident memory (MiB)")
    memory.set_xlabel("minutes")
    memory.set_ylim(bottom=0)
    memory.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--interval", type=float, default=10.0, help="report every N seconds")
    parser.add_argument(
        "--rate", type=float, default=6.0, help="requests/s per protocol (5 protocols)"
    )
    parser.add_argument("--hostile-rate", type=float, default=2.0, help="bad requests/s")
    parser.add_argument("--save-every", type=int, default=5, help="save one request in N (0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "soak-results")
    args = parser.parse_args(argv)
    config = SoakConfig(
        args.duration, args.interval, args.rate, args.hostile_rate, args.save_every, args.out
    )
    console = Console()
    console.print(
        f"soak: {config.duration_s:.0f} s, {config.rate:g}/s on each of {len(ALL_PROTOCOLS)} "
        f"protocols, one in {config.save_every} saving, {config.hostile_rate:g}/s hostile; "
        f"pid {os.getpid()}"
    )
    result = run(config, console)
    print_summary(result, console)
    (config.out / "soak.json").write_text(json.dumps(result, indent=1))
    (config.out / "soak.md").write_text(markdown(result))
    plot(result, config.out / "soak.png")
    console.print(f"wrote {config.out}/soak.json, soak.md, soak.png")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
