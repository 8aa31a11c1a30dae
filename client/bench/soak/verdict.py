"""A soak's verdict: the totals, the audit of every answered save, memory growth."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from client.bench.load import new_histogram
from client.bench.soak import SoakConfig
from client.bench.soak.ledger import Ledger
from client.bench.soak.traffic import HOSTILE
from client.transports import ALL_PROTOCOLS
from facewire.audit import audit

#: The second half's peak resident memory may exceed the first half's by this factor and
#: this many MiB; more fails the soak as a leak. (The plot shows the whole curve.)
MEMORY_GROWTH_LIMIT = 1.1
MEMORY_SLACK_MIB = 48.0


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
