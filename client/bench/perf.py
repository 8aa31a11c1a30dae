"""``make perf``: the performance targets, each a ratio measured inside one run.

``python -m client.bench.perf [--quick] [--rounds N] [--out DIR]`` starts its own
services (and bare servers to compare them with) on free loopback ports, sends the face
fixture (1280×720, JPEG q90, one face), and prints every target's ratio against its bound.
Rounds interleave the in-process floor with the protocol windows, and each ratio is the
median over rounds of a value taken from neighbouring measurements, so that a noisy
machine moves numerator and denominator together. Nothing here fails on a slow
machine: the exit status is 0 unless a measurement itself went wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

from client import xvfb
from client.bench import machine
from client.bench.floor import limit_throughput, time_per_frame
from client.bench.load import WindowResult, WindowSpec
from client.bench.measure import summarise
from client.bench.processes import Child, bare_servers, bare_sync_grpc, facewire_services
from client.bench.runner import CPU_LIMIT, LoadPool
from client.transports import PROTOCOLS, ProtocolName, TransportError, make_transport
from facewire.detector import FaceDetector
from facewire.messages import DetectionRequest, DetectionResult
from facewire.pipeline import Pipeline
from facewire.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FACE = FIXTURES / "face_1280x720.jpg"
UNARY: tuple[ProtocolName, ...] = ("rest", "grpc")
#: P8's condition: our boxes within this many pixels of the colour pipeline's.
P8_BOX_PX = 2


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    bounds: dict[str, float]  # by protocol, or "all"
    higher_is_better: bool

    def met(self, name: str, value: float) -> bool:
        bound = self.bounds.get(name, self.bounds.get("all"))
        assert bound is not None
        return value >= bound if self.higher_is_better else value <= bound

    def bound_text(self, name: str) -> str:
        bound = self.bounds.get(name, self.bounds.get("all"))
        return f"{'≥' if self.higher_is_better else '≤'} {bound:g}"


TARGETS = (
    Target("P1", "throughput at concurrency 4 ÷ (cores ÷ single-thread time per frame)",
           {"all": 0.95}, True),
    Target("P2", "overhead p50 at concurrency 1, ms (end-to-end − server total)",
           {"rest": 1.0, "grpc": 0.5, "grpc-stream": 0.5}, False),
    Target("P3", "end-to-end p50 at concurrency 1 ÷ single-thread in-process p50",
           {"all": 0.55}, False),
    Target("P4", "model echo: saturation throughput ÷ a bare server's",
           {"rest": 0.8, "grpc": 0.9}, True),
    Target("P5", "grpc-stream p50 ÷ grpc p50 at concurrency 1, requests alternating",
           {"all": 1.0}, False),
    Target("P6", "GUI, mode both, sample source: window fps and overlay updates per second",
           {"window fps": 20, "rest overlay updates/s": 5, "grpc overlay updates/s": 5}, True),
    Target("P7", "resident memory after the run's requests ÷ after the first 100",
           {"all": 1.1}, False),
    Target("P8", "single-thread pipeline time ÷ the straightforward colour pipeline's "
           f"(met only with its boxes within {P8_BOX_PX} px on every fixture)",
           {"all": 0.9}, False),
)  # fmt: skip


@dataclass
class Plan:
    rounds: int = 5
    window_s: float = 2.0
    floor_s: float = 1.5
    echo_concurrency: int = 8
    # P4: many short facewire/bare pairs, so that the machine's drift from second to
    # second moves both sides of a pair alike (5 pairs of 2 s spread 0.80-0.99).
    echo_pairs: int = 12
    echo_window_s: float = 1.0
    p7_requests: int = 10_000
    p8_frames: int = 15
    gui_s: float = 15.0

    @classmethod
    def quick(cls) -> Plan:
        """For CI: every step runs, briefly; the numbers mean little."""
        return cls(rounds=1, window_s=0.4, floor_s=0.2, echo_pairs=1, echo_window_s=0.4,
                   p7_requests=300, p8_frames=2, gui_s=4.0)  # fmt: skip


@dataclass
class Results:
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)  # requests answered, by service
    #: Targets whose condition beside the ratio failed (P8: its boxes), with why.
    unmet: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, name: str, value: float) -> None:
        self.values.setdefault(key, {}).setdefault(name, []).append(value)

    def medians(self) -> dict[str, dict[str, float]]:
        return {
            k: {n: statistics.median(v) for n, v in by.items()} for k, by in self.values.items()
        }


# --- measurements ------------------------------------------------------------------


def _window(pool: LoadPool, protocol: ProtocolName, model: str, concurrency: int,
            *, seconds: float | None = None, requests: int | None = None,
            seed: int = 1) -> WindowResult:  # fmt: skip
    spec = WindowSpec(protocol=protocol, model=model, concurrency=concurrency, rate=None,
                      duration_s=seconds, requests=requests, seed=seed)  # fmt: skip
    return pool.run(spec)


def _summary(window: WindowResult) -> dict[str, object]:
    return summarise([window], stable=True, encode_ms=0.0, cpu_limit=CPU_LIMIT)


def _p50(summary: dict[str, object], key: str = "latency_ms") -> float:
    latency = summary[key]
    assert isinstance(latency, dict), f"no answers: {summary.get('errors')}"
    return float(latency["p50"])


class Floor:
    """The in-process pipeline on one thread, OpenCV's threads off: the denominator."""

    def __init__(self, image: bytes) -> None:
        self.pipeline = Pipeline(Settings(), FaceDetector(), None)
        self.requests = [DetectionRequest(image)]

    def measure(self, seconds: float) -> list[float]:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return time_per_frame(self.pipeline, self.requests, seconds)
        finally:
            cv2.setNumThreads(threads)


def measure_p8(image: bytes, plan: Plan, results: Results) -> None:
    """Our pipeline against the straightforward one, alternating, one thread."""
    detector = FaceDetector()
    ours = Pipeline(Settings(), detector, None)
    colour = Pipeline(Settings(decode_mode="colour"), detector, None)
    request = DetectionRequest(image)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for pipeline in (ours, colour):
            pipeline.run(request)  # warm
        for _ in range(max(plan.rounds, 1) * 3):
            times = {}
            for name, pipeline in (("ours", ours), ("colour", colour)):
                samples = []
                for _ in range(plan.p8_frames):
                    start = time.perf_counter()
                    pipeline.run(request)
                    samples.append(time.perf_counter() - start)
                times[name] = statistics.median(samples)
            results.add("P8", "all", times["ours"] / times["colour"])
    finally:
        cv2.setNumThreads(threads)
    agreement = _fixture_agreement(ours, colour)
    results.notes["P8 boxes"] = agreement
    off = {name: px for name, px in agreement.items() if px is None or px > P8_BOX_PX}
    if off:
        results.unmet["P8"] = f"boxes beyond {P8_BOX_PX} px (None: a different count): {off}"


def _fixture_agreement(ours: Pipeline, colour: Pipeline) -> dict[str, int | None]:
    """Per test fixture: the largest box-edge difference in pixels (None: the number of
    boxes differs)."""
    agreement: dict[str, int | None] = {}
    for path in sorted(FIXTURES.glob("*.jpg")):
        data = path.read_bytes()
        mine, theirs = ours.run(DetectionRequest(data)), colour.run(DetectionRequest(data))
        agreement[path.name] = edge_difference(mine, theirs)
    return agreement


def edge_difference(a: DetectionResult, b: DetectionResult) -> int | None:
    """The largest box-edge difference in pixels; None when the number of boxes differs."""
    if len(a.boxes) != len(b.boxes):
        return None

    def edges(result: DetectionResult) -> list[tuple[int, int, int, int]]:
        return sorted((x.x, x.y, x.x + x.width, x.y + x.height) for x in result.boxes)

    pairs = zip(edges(a), edges(b), strict=True)
    return max((abs(p - q) for one, two in pairs for p, q in zip(one, two, strict=True)), default=0)


def _count(results: Results, service: str, window: WindowResult) -> None:
    results.served[service] += window.completed + sum(window.errors.values())
    _count_errors(results, window)


def _count_errors(results: Results, window: WindowResult, server: str = "") -> None:
    """Failed requests, by protocol and kind; ``server`` names a reference server, whose
    failures count too (a broken reference would otherwise only show as a ratio)."""
    for kind, n in window.errors.items():
        results.errors[f"{server}{window.protocol} {kind}"] += n


def _turn(protocols: tuple[ProtocolName, ...], r: int) -> tuple[ProtocolName, ...]:
    """Round ``r``'s order: each protocol goes first in turn, so none always follows the
    floor measurement or another protocol."""
    k = r % len(protocols)
    return protocols[k:] + protocols[:k]


def _service_of(protocol: str) -> str:
    return "rest" if protocol == "rest" else "grpc"


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
                _count(
                    results, _service_of(protocol), _window(pool, protocol, "haar", 4, requests=100)
                )
            rss_start = {name: child.rss_mib() for name, child in (children or {}).items()}
            _window(pool, "grpc-stream", "haar", 1, requests=10)

            for r in range(plan.rounds):
                progress(f"round {r + 1}/{plan.rounds}: floor, concurrency 1 and 4")
                # The floor is measured next to every window it divides, since the
                # machine's speed drifts over seconds: once around the concurrency-1
                # windows (P3), and between the concurrency-4 windows (P1).
                before = floor.measure(plan.floor_s)
                level1 = {
                    p: _window(pool, p, "haar", 1, seconds=plan.window_s, seed=r)
                    for p in _turn(PROTOCOLS, r)
                }
                floors = [floor.measure(plan.floor_s)]
                level4 = {}
                for each in _turn(PROTOCOLS, r):
                    level4[each] = _window(pool, each, "haar", 4, seconds=plan.window_s, seed=r)
                    floors.append(floor.measure(plan.floor_s))
                single_p50 = statistics.median(before + floors[0])
                limit = limit_throughput(floors[0] + floors[-1])
                for k, protocol in enumerate(_turn(PROTOCOLS, r)):
                    for window in (level1[protocol], level4[protocol]):
                        _count(results, _service_of(protocol), window)
                    one, four = _summary(level1[protocol]), _summary(level4[protocol])
                    server = one["server_ms"]
                    assert isinstance(server, dict)
                    around = limit_throughput(
                        floors[k] + floors[k + 1]
                    )  # just before and just after
                    results.add("P1", protocol, float(four["throughput"]) / around)  # type: ignore[arg-type]
                    results.add("P2", protocol, _p50(one, "overhead_ms") + server["queue"])
                    results.add("P3", protocol, _p50(one) / single_p50)
                    results.add("latency p50 ms", protocol, _p50(one))
                results.add(
                    "P5 windows",
                    "all",
                    _p50(_summary(level1["grpc-stream"])) / _p50(_summary(level1["grpc"])),
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


def measure_p4(image: bytes, plan: Plan, results: Results, workdir: Path, url: str,
               target: str, children: dict[str, Child]) -> None:  # fmt: skip
    """Model echo: our services against bare servers, in short alternating pairs."""
    with bare_servers(workdir) as (bare_url, bare_target, bare_rest, bare_grpc):
        bare_children = {"rest": bare_rest, "grpc": bare_grpc}
        bare = LoadPool(2, [image], bare_url, bare_target)
        ours = LoadPool(2, [image], url, target)
        try:
            for protocol in UNARY:  # warm both
                for p in (bare, ours):
                    _window(p, protocol, "echo", plan.echo_concurrency, seconds=plan.window_s / 2)
            for r in range(plan.echo_pairs):
                for protocol in _turn(UNARY, r):
                    sides = [
                        ("ours", ours, children[protocol]),
                        ("bare", bare, bare_children[protocol]),
                    ]
                    if r % 2:
                        sides.reverse()  # A B, then B A: neither always goes first
                    windows, cpu_ms = {}, {}
                    for side, side_pool, server in sides:
                        cpu_before = server.cpu_s()
                        window = _window(side_pool, protocol, "echo", plan.echo_concurrency,
                                         seconds=plan.echo_window_s, seed=r)  # fmt: skip
                        used = server.cpu_s() - cpu_before
                        windows[side] = window
                        cpu_ms[side] = 1000 * used / max(1, window.completed)
                    mine, theirs = windows["ours"], windows["bare"]
                    _count(results, _service_of(protocol), mine)
                    _count_errors(results, theirs, "bare ")
                    results.add("P4", protocol, _throughput(mine) / _throughput(theirs))
                    results.add("echo /s", protocol, _throughput(mine))
                    results.add("bare echo /s", protocol, _throughput(theirs))
                    # Steadier than throughput on a shared machine: the server's
                    # own CPU per answer, bare's ÷ ours (1 = as lean as bare).
                    results.add("P4 CPU", protocol, cpu_ms["bare"] / cpu_ms["ours"])
                    results.add("echo server CPU ms", protocol, cpu_ms["ours"])
                    results.add("bare echo server CPU ms", protocol, cpu_ms["bare"])
        finally:
            bare.close()
            ours.close()


def measure_p7(image: bytes, plan: Plan, results: Results, pool: LoadPool,
               children: dict[str, Child], rss_start: dict[str, float],
               progress: Callable[[str], None]) -> None:  # fmt: skip
    """Resident memory after the run's requests (topped up to plan.p7_requests)."""
    each: tuple[tuple[str, ProtocolName], ...] = (("rest", "rest"), ("grpc", "grpc"))
    for service, protocol in each:
        missing = plan.p7_requests - results.served[service]
        if missing > 0:
            progress(f"P7: {missing} more requests to the {service} service")
            _count(results, service, _window(pool, protocol, "haar", 4, requests=missing))
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
                Side("facewire", ours, children[_service_of(protocol)]),
                Side("bare + core", bare, {"rest": bare_rest, "grpc": bare_grpc}[protocol]),
            ]
            for protocol in UNARY
        }
        # grpcio's other worker model, for comparison
        sides["grpc"].append(Side("grpc sync + core", sync, sync_child))
        try:
            _window(sync, "grpc", "haar", 4, seconds=plan.window_s / 2)
            for protocol in UNARY:
                _window(bare, protocol, "haar", 1, seconds=plan.window_s / 2)
            for r in range(plan.rounds):
                single_p50 = statistics.median(floor.measure(plan.floor_s))
                for protocol in _turn(UNARY, r):
                    for side in sides[protocol][:2]:  # facewire, then bare + core
                        _p2_p3(side, protocol, r, plan, results, single_p50)
                for protocol in _turn(UNARY, r):
                    k = r % len(sides[protocol])  # none always goes first
                    _p1_pairs(sides[protocol][k:] + sides[protocol][:k], protocol, r, plan,
                              results, floor)  # fmt: skip
        finally:
            bare.close()
            sync.close()


def _p2_p3(side: Side, protocol: ProtocolName, r: int, plan: Plan, results: Results,
           single_p50: float) -> None:  # fmt: skip
    window = _window(side.pool, protocol, "haar", 1, seconds=plan.window_s, seed=r)
    _count_side(results, side, window)
    summary = _summary(window)
    server = summary["server_ms"]
    assert isinstance(server, dict)
    overhead = _p50(summary, "overhead_ms") + server["queue"]
    results.add(f"P2 {side.name}", protocol, overhead)
    results.add(f"P3 {side.name}", protocol, _p50(summary) / single_p50)


def _p1_pairs(sides: list[Side], protocol: ProtocolName, r: int, plan: Plan,
              results: Results, floor: Floor) -> None:  # fmt: skip
    """P1 for each side in turn, each between floors measured just before and after."""
    floors = [floor.measure(plan.floor_s)]
    for side in sides:
        cpu_before = side.child.cpu_s()
        window = _window(side.pool, protocol, "haar", 4, seconds=plan.window_s, seed=r)
        cpu_ms = 1000 * (side.child.cpu_s() - cpu_before) / max(1, window.completed)
        floors.append(floor.measure(plan.floor_s))
        around = floors[-2] + floors[-1]
        _count_side(results, side, window)
        results.add(f"P1 {side.name}", protocol, _throughput(window) / limit_throughput(around))
        # Above 1: the server spends more CPU per frame than the pipeline alone on one
        # thread (its framework, its threads, the client's interruptions).
        results.add(f"P1 server CPU ÷ floor, {side.name}", protocol,
                    cpu_ms / statistics.fmean(around))  # fmt: skip


def _count_side(results: Results, side: Side, window: WindowResult) -> None:
    if side.name == "facewire":
        _count(results, _service_of(window.protocol), window)
    else:
        _count_errors(results, window, f"{side.name} ")


def measure_gui(url: str, target: str, seconds: float, results: Results, workdir: Path) -> None:
    """The real GUI on a virtual screen (or the real one), sample source, mode both."""
    if xvfb.available():
        screen: contextlib.AbstractContextManager[str] = xvfb.virtual_display()
    elif os.environ.get("DISPLAY"):
        screen = contextlib.nullcontext(os.environ["DISPLAY"])
    else:
        results.notes["P6"] = "not measured: no Xvfb and no display"
        return
    rates_file = workdir / "gui-rates.json"
    command = ["-m", "client", "--source", "sample", "--mode", "both", "--log-every", "0",
               "--duration", f"{seconds:g}", "--rest-url", url, "--grpc-target", target,
               "--rates-json", str(rates_file)]  # fmt: skip
    with screen as display:
        gui = Child(command, {"DISPLAY": display}, workdir / "gui.log")
        try:
            code = gui.popen.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            gui.stop()
            raise RuntimeError(
                f"the GUI did not close after {seconds:g} s; see {gui.log}"
            ) from None
    if code != 0 or not rates_file.exists():
        raise RuntimeError(f"the GUI exited with {code}; see {gui.log}")
    rates = json.loads(rates_file.read_text())
    results.add("P6", "window fps", rates["fps"])
    for protocol, rate in rates["updates_per_s"].items():
        results.add("P6", f"{protocol} overlay updates/s", rate)


def _throughput(window: WindowResult) -> float:
    return window.completed / window.elapsed_s if window.elapsed_s else 0.0


# --- output ------------------------------------------------------------------------


def rows(results: Results) -> list[dict[str, object]]:
    medians = results.medians()
    out = []
    for target in TARGETS:
        for name, value in medians.get(target.key, {}).items():
            out.append({
                "target": target.key, "what": target.what, "protocol": name,
                "value": round(value, 3), "bound": target.bound_text(name),
                "met": target.met(name, value) and target.key not in results.unmet,
                "rounds": [round(v, 3) for v in results.values[target.key][name]],
            })  # fmt: skip
    return out


def print_table(table_rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title="facewire performance targets (ratios inside this run)")
    for column in ("target", "protocol", "value", "bound", "met", "what"):
        table.add_column(column)
    for row in table_rows:
        met = "[green]yes[/green]" if row["met"] else "[red]no[/red]"
        table.add_row(str(row["target"]), str(row["protocol"]), f"{row['value']}",
                      str(row["bound"]), met, str(row["what"]))  # fmt: skip
    console.print(table)


def markdown(table_rows: list[dict[str, object]], results: Results) -> str:
    lines = ["| target | protocol | value | bound | met | rounds |", "|---|---|---|---|---|---|"]
    for row in table_rows:
        rounds = ", ".join(f"{v:g}" for v in row["rounds"])  # type: ignore[attr-defined]
        met = "yes" if row["met"] else "**no**"
        lines.append(f"| {row['target']} | {row['protocol']} | {row['value']} | {row['bound']} | "
                     f"{met} | {rounds} |")  # fmt: skip
    lines += [f"\n{key} not met: {why}" for key, why in results.unmet.items()]
    targets = {t.key for t in TARGETS}
    lines += ["", "Measured alongside (medians over rounds):", "", "| measure | of | value |",
              "|---|---|---|"]  # fmt: skip
    for key, by in results.medians().items():
        if key not in targets:
            lines += [f"| {key} | {name} | {value:.3f} |" for name, value in by.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m client.bench.perf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny setting (CI): shows it works")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved measurements")
    parser.add_argument("--p7-requests", type=int, help="requests per service before P7's reading")
    parser.add_argument("--out", type=Path, help="folder for perf.json and perf.md")
    parser.add_argument(
        "--rest-url",
        help="measure the REST service running here (with "
        "--grpc-target) instead of starting both; P4 and P7 are then skipped",
    )
    parser.add_argument("--grpc-target", help="the gRPC service running at host:port")
    args = parser.parse_args(argv)
    if (args.rest_url is None) != (args.grpc_target is None):
        parser.error("--rest-url and --grpc-target go together")
    remote = (args.rest_url, args.grpc_target) if args.rest_url else None
    plan = Plan.quick() if args.quick else Plan()
    if args.rounds:
        plan.rounds = args.rounds
    if args.p7_requests:
        plan.p7_requests = args.p7_requests
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path("perf-results") / stamp
    out.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 160)
    image = FACE.read_bytes()
    results = Results()
    started = time.time()
    try:
        console.print("P8: the pipeline alone, ours against the colour pipeline")
        measure_p8(image, plan, results)
        with tempfile.TemporaryDirectory(prefix="facewire-perf-") as workdir:
            measure_services(image, plan, results, Path(workdir),
                             lambda text: console.print(text), remote)  # fmt: skip
    except (RuntimeError, AssertionError) as error:
        console.print(f"[red]facewire perf: {error}[/red]")
        return 1
    except KeyboardInterrupt:
        return 130
    table_rows = rows(results)
    document = {
        **machine.run_record("facewire_perf", started),
        "plan": plan.__dict__,
        "targets": table_rows,
        "measured": results.medians(),
        "notes": results.notes,
        "errors": dict(results.errors),
        "unmet_conditions": results.unmet,
        "served": dict(results.served),
    }
    (out / "perf.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "perf.md").write_text(markdown(table_rows, results))
    print_table(table_rows, console)
    console.print(f"measured: {json.dumps(results.medians())}")
    console.print(f"notes: {json.dumps(results.notes)}; errors: {results.errors or 'none'}")
    for key, why in results.unmet.items():
        console.print(f"[red]{key} not met: {why}[/red]")
    console.print(f"results in {out}/ (perf.json, perf.md)")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
