"""Our services against the bare frameworks, in neighbouring windows: P4 (echo
against a bare FastAPI app and a bare grpc.aio servicer) and P1, P2 and P3 against the
same frameworks serving the same core."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from client.bench.floor import limit_throughput
from client.bench.load import WindowResult
from client.bench.perf.pipeline import Floor
from client.bench.perf.targets import Plan, Results
from client.bench.perf.windows import (
    count,
    count_errors,
    p50,
    run_window,
    service_of,
    summarise_one,
    throughput,
    turn,
)
from client.bench.runner import LoadPool
from client.bench.servers import bare_servers, bare_sync_grpc
from client.processes import Child
from client.transports import ProtocolName

UNARY: tuple[ProtocolName, ...] = ("rest", "grpc")


def measure_p4(image: bytes, plan: Plan, results: Results, workdir: Path, url: str,
               target: str, children: dict[str, Child]) -> None:  # fmt: skip
    """Model echo: our services against bare servers, in short alternating turns.

    P4's yardstick is the bare framework handing echo to the same core (``bare --core``):
    echo runs on the pipeline's thread pool under the in-flight cap, as every model does,
    so what P4 compares is the adapters (servicer or endpoint, conversions, the upload
    budget, metrics). A bare server answering inline is measured beside it ("P4 inline"):
    that ratio also carries the hop to a pipeline thread, which no model skips."""
    with (
        bare_servers(workdir, core=True) as (core_url, core_target, core_rest, core_grpc),
        bare_servers(workdir) as (bare_url, bare_target, bare_rest, bare_grpc),
    ):
        pools = {
            "ours": LoadPool(2, [image], url, target),
            "bare": LoadPool(2, [image], core_url, core_target),
            "inline": LoadPool(2, [image], bare_url, bare_target),
        }
        servers = {"ours": children, "bare": {"rest": core_rest, "grpc": core_grpc},
                   "inline": {"rest": bare_rest, "grpc": bare_grpc}}  # fmt: skip
        try:
            for protocol in UNARY:  # warm every side
                for p in pools.values():
                    run_window(
                        p, protocol, "echo", plan.echo_concurrency, seconds=plan.window_s / 2
                    )
            for r in range(plan.echo_pairs):
                for protocol in turn(UNARY, r):
                    names = list(pools)
                    k = r % len(names)  # none always goes first
                    sides = names[k:] + names[:k]
                    windows, cpu_ms = {}, {}
                    for side in sides:
                        server = servers[side][protocol]
                        cpu_before = server.cpu_s()
                        window = run_window(pools[side], protocol, "echo",
                                            plan.echo_concurrency, seconds=plan.echo_window_s,
                                            seed=r)  # fmt: skip
                        used = server.cpu_s() - cpu_before
                        windows[side] = window
                        cpu_ms[side] = 1000 * used / max(1, window.completed)
                    mine = windows["ours"]
                    count(results, service_of(protocol), mine)
                    count_errors(results, windows["bare"], "bare + core ")
                    count_errors(results, windows["inline"], "bare ")
                    results.add("P4", protocol, throughput(mine) / throughput(windows["bare"]))
                    results.add("P4 inline", protocol,
                                throughput(mine) / throughput(windows["inline"]))  # fmt: skip
                    results.add("echo /s", protocol, throughput(mine))
                    results.add("bare + core echo /s", protocol, throughput(windows["bare"]))
                    results.add("bare inline echo /s", protocol, throughput(windows["inline"]))
                    # Steadier than throughput on a shared machine: the server's
                    # own CPU per answer, bare's ÷ ours (1 = as lean as bare).
                    results.add("P4 CPU", protocol, cpu_ms["bare"] / cpu_ms["ours"])
                    results.add("echo server CPU ms", protocol, cpu_ms["ours"])
                    results.add("bare + core echo server CPU ms", protocol, cpu_ms["bare"])
                    results.add("bare inline echo server CPU ms", protocol, cpu_ms["inline"])
        finally:
            for pool in pools.values():
                pool.close()
    results.add("P4 budget", "grpc", admission_cost_us(plan.admission_calls))


def admission_cost_us(calls: int) -> float:
    """The gRPC upload admission's own CPU per call (``python -m grpc_service.cost``)."""
    command = [sys.executable, "-m", "grpc_service.cost", str(calls)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)  # noqa: S603
    return float(json.loads(done.stdout)["admission_us"])


@dataclass
class Side:
    """One server of a comparison: its name in the results, its load and its process."""

    name: str
    pool: LoadPool
    child: Child


def measure_against_bare_core(
    image: bytes,
    plan: Plan,
    results: Results,
    workdir: Path,
    services: tuple[LoadPool, dict[str, Child]],
    floor: Floor,
) -> None:
    """P1, P2 and P3 for our services and, paired window by window, for bare frameworks
    serving the same core (``bare --core``): their difference is what our adapters cost,
    and what both miss is the framework's and the machine's. P1 is also taken for
    grpcio's synchronous server running the core on its handler threads: the other
    worker model, which REST has no match for."""
    ours, children = services
    with (
        bare_servers(workdir, core=True) as (url, target, bare_rest, bare_grpc),
        bare_sync_grpc(workdir) as (sync_target, sync_child),
    ):
        bare = LoadPool(1, [image], url, target)
        sync = LoadPool(1, [image], url, sync_target)
        sides = {
            protocol: [
                Side("facewire", ours, children[service_of(protocol)]),
                Side("bare + core", bare, {"rest": bare_rest, "grpc": bare_grpc}[protocol]),
            ]
            for protocol in UNARY
        }
        # grpcio's other worker model, for comparison
        sides["grpc"].append(Side("grpc sync + core", sync, sync_child))
        try:
            run_window(sync, "grpc", "haar", 4, seconds=plan.window_s / 2)
            for protocol in UNARY:
                run_window(bare, protocol, "haar", 1, seconds=plan.window_s / 2)
            for r in range(plan.rounds):
                single_p50 = statistics.median(floor.measure(plan.floor_s))
                for protocol in turn(UNARY, r):
                    for side in sides[protocol][:2]:  # facewire, then bare + core
                        _p2_p3(side, protocol, r, plan, results, single_p50)
                for protocol in turn(UNARY, r):
                    k = r % len(sides[protocol])  # none always goes first
                    _p1_pairs(sides[protocol][k:] + sides[protocol][:k], protocol, r, plan,
                              results, floor)  # fmt: skip
        finally:
            bare.close()
            sync.close()


def _p2_p3(side: Side, protocol: ProtocolName, r: int, plan: Plan, results: Results,
           single_p50: float) -> None:  # fmt: skip
    window = run_window(side.pool, protocol, "haar", 1, seconds=plan.window_s, seed=r)
    _count_side(results, side, window)
    summary = summarise_one(window)
    server = summary["server_ms"]
    assert isinstance(server, dict)
    overhead = p50(summary, "overhead_ms") + server["queue"]
    results.add(f"P2 {side.name}", protocol, overhead)
    results.add(f"P3 {side.name}", protocol, p50(summary) / single_p50)


def _p1_pairs(sides: list[Side], protocol: ProtocolName, r: int, plan: Plan,
              results: Results, floor: Floor) -> None:  # fmt: skip
    """P1 for each side in turn, each between floors measured just before and after."""
    floors = [floor.measure(plan.floor_s)]
    for side in sides:
        cpu_before = side.child.cpu_s()
        window = run_window(side.pool, protocol, "haar", 4, seconds=plan.window_s, seed=r)
        cpu_ms = 1000 * (side.child.cpu_s() - cpu_before) / max(1, window.completed)
        floors.append(floor.measure(plan.floor_s))
        around = floors[-2] + floors[-1]
        _count_side(results, side, window)
        results.add(f"P1 {side.name}", protocol, throughput(window) / limit_throughput(around))
        # Above 1: the server spends more CPU per frame than the pipeline alone on one
        # thread (its framework, its threads, the client's interruptions).
        results.add(f"P1 server CPU ÷ floor, {side.name}", protocol,
                    cpu_ms / statistics.fmean(around))  # fmt: skip


def _count_side(results: Results, side: Side, window: WindowResult) -> None:
    if side.name == "facewire":
        count(results, service_of(window.protocol), window)
    else:
        count_errors(results, window, f"{side.name} ")
