"""One soak: both services started, the traffic for its duration, memory sampled in
every interval, then the services drained."""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from typing import Any

from rich.console import Console

from client.bench import FACE, NOFACE
from client.bench.servers import facewire_services
from client.bench.soak import SoakConfig
from client.bench.soak.ledger import Ledger
from client.bench.soak.traffic import HOSTILE, hostile_traffic, traffic
from client.bench.soak.verdict import report
from client.transports import ALL_PROTOCOLS

FRAMES = (FACE, NOFACE)


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
