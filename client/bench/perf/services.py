"""Our two services under the load of every protocol: P1, P2, P3 and P5 (and P7,
the services' memory), each window next to the in-process floor it is divided by."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from client.bench.floor import limit_throughput
from client.bench.perf.gui import measure_gui
from client.bench.perf.pipeline import Floor
from client.bench.perf.references import measure_against_bare_core, measure_p4
from client.bench.perf.targets import Plan, Results
from client.bench.perf.windows import count, p50, run_window, service_of, summarise_one, turn
from client.bench.runner import LoadPool
from client.bench.servers import facewire_services
from client.processes import Child
from client.transports import PROTOCOLS, ProtocolName, TransportError, make_transport

UNARY: tuple[ProtocolName, ...] = ("rest", "grpc")


@contextlib.contextmanager
def services_to_measure(
    workdir: Path, remote: tuple[str, str] | None
) -> Iterator[tuple[str, str, dict[str, Child] | None]]:
    """Both services: perf's own child processes (whose CPU and memory it reads), or
    the ones at ``remote`` (REST URL, gRPC target), containers say, which it only calls."""
    if remote is not None:
        yield remote[0], remote[1], None
        return
    with facewire_services(workdir) as (url, target, rest, grpc_child):
        yield url, target, {"rest": rest, "grpc": grpc_child}


def measure_services(image: bytes, plan: Plan, results: Results, workdir: Path,
                     progress: Callable[[str], None],
                     remote: tuple[str, str] | None = None) -> None:  # fmt: skip
    floor = Floor(image)
    with services_to_measure(workdir, remote) as (url, target, children):
        pool = LoadPool(1, [image], url, target)
        try:
            progress("warm-up: 100 requests to each service")
            for protocol in UNARY:  # P7's baseline: resident memory after the first 100
                count(
                    results,
                    service_of(protocol),
                    run_window(pool, protocol, "haar", 4, requests=100),
                )
            rss_start = {name: child.rss_mib() for name, child in (children or {}).items()}
            run_window(pool, "grpc-stream", "haar", 1, requests=10)

            for r in range(plan.rounds):
                progress(f"round {r + 1}/{plan.rounds}: floor, concurrency 1 and 4")
                # The floor is measured next to every window it divides, since the
                # machine's speed drifts over seconds: once around the concurrency-1
                # windows (P3), and between the concurrency-4 windows (P1).
                before = floor.measure(plan.floor_s)
                level1 = {
                    p: run_window(pool, p, "haar", 1, seconds=plan.window_s, seed=r)
                    for p in turn(PROTOCOLS, r)
                }
                floors = [floor.measure(plan.floor_s)]
                level4 = {}
                for each in turn(PROTOCOLS, r):
                    level4[each] = run_window(pool, each, "haar", 4, seconds=plan.window_s, seed=r)
                    floors.append(floor.measure(plan.floor_s))
                single_p50 = statistics.median(before + floors[0])
                limit = limit_throughput(floors[0] + floors[-1])
                for k, protocol in enumerate(turn(PROTOCOLS, r)):
                    for window in (level1[protocol], level4[protocol]):
                        count(results, service_of(protocol), window)
                    one, four = summarise_one(level1[protocol]), summarise_one(level4[protocol])
                    server = one["server_ms"]
                    assert isinstance(server, dict)
                    around = limit_throughput(
                        floors[k] + floors[k + 1]
                    )  # just before and just after
                    results.add("P1", protocol, float(four["throughput"]) / around)  # type: ignore[arg-type]
                    results.add("P2", protocol, p50(one, "overhead_ms") + server["queue"])
                    results.add("P3", protocol, p50(one) / single_p50)
                    results.add("latency p50 ms", protocol, p50(one))
                results.add(
                    "P5 windows",
                    "all",
                    p50(summarise_one(level1["grpc-stream"])) / p50(summarise_one(level1["grpc"])),
                )
                measure_p5(image, url, target, 2 * plan.window_s, r, results)
                results.add("single-thread p50 ms", "all", single_p50)
                results.add("limit throughput /s", "all", limit)

            if children is None:
                results.notes["not measured"] = (
                    "P4, P7 and the bare-framework comparisons: they read the services' "
                    "CPU and memory, and these were given by --rest-url/--grpc-target"
                )
            else:
                progress("P4: model echo, facewire against bare servers")
                measure_p4(image, plan, results, workdir, url, target, children)
                progress("P1, P2 and P3 against bare frameworks serving the same core")
                measure_against_bare_core(image, plan, results, workdir, (pool, children), floor)
                measure_p7(image, plan, results, pool, children, rss_start, progress)
            progress(f"P6: the GUI in mode both for {plan.gui_s:g} s")
            measure_gui(url, target, plan.gui_s, results, workdir)
        finally:
            pool.close()


def measure_p7(image: bytes, plan: Plan, results: Results, pool: LoadPool,
               children: dict[str, Child], rss_start: dict[str, float],
               progress: Callable[[str], None]) -> None:  # fmt: skip
    """Resident memory after the run's requests (topped up to plan.p7_requests)."""
    each: tuple[tuple[str, ProtocolName], ...] = (("rest", "rest"), ("grpc", "grpc"))
    for service, protocol in each:
        missing = plan.p7_requests - results.served[service]
        if missing > 0:
            progress(f"P7: {missing} more requests to the {service} service")
            count(results, service, run_window(pool, protocol, "haar", 4, requests=missing))
    for name, child in children.items():
        rss_end = child.rss_mib()
        results.add("P7", name, rss_end / rss_start[name])
        results.notes[f"P7 {name}: MiB after 100, after {results.served[name]}"] = [
            round(rss_start[name], 1),
            round(rss_end, 1),
        ]


def measure_p5(
    image: bytes, url: str, target: str, seconds: float, seed: int, results: Results
) -> None:
    """grpc-stream's p50 ÷ unary grpc's at concurrency 1, request by request: the two
    alternate, so both meet the same moments of a shared machine. (Separate windows of
    each differ by more than the 1–2 % of a 25 ms request that the stream saves.)"""
    clients = {p: make_transport(p, url, target) for p in ("grpc", "grpc-stream")}
    times: dict[str, list[float]] = {p: [] for p in clients}
    try:
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline or i < 10:
            # Which goes first alternates too, so neither always follows the other.
            for protocol in ("grpc", "grpc-stream") if (i + seed) % 2 else ("grpc-stream", "grpc"):
                results.served["grpc"] += 1
                start = time.perf_counter()
                try:
                    clients[protocol].detect(image, model="haar", save=False, frame_id=str(i))
                except TransportError as error:
                    results.errors[f"{protocol} {error.kind}"] += 1
                    continue
                times[protocol].append(time.perf_counter() - start)
            i += 1
    finally:
        for client in clients.values():
            client.close()
    if times["grpc"] and times["grpc-stream"]:
        ratio = statistics.median(times["grpc-stream"]) / statistics.median(times["grpc"])
        results.add("P5", "all", ratio)
