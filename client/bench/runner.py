"""Runs the sweep: points, windows alternating between protocols, the stability rule."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

from client.bench.h2load import SUPPORTED as H2LOAD_PROTOCOLS
from client.bench.h2load import H2loadGenerator
from client.bench.load import WindowResult, WindowSpec, serve
from client.bench.measure import is_stable, paired_ratio, summarise
from client.transports import ProtocolName
from facewire.dataplane import cpu_count as cores

#: A generator process using this share of one core (or more) cannot keep up.
CPU_LIMIT = 0.9


@dataclass(frozen=True)
class BenchConfig:
    protocols: tuple[ProtocolName, ...] = ("rest", "grpc", "grpc-stream")
    models: tuple[str, ...] = ("haar", "echo")
    concurrency: tuple[int, ...] = (1, 2, 4)
    rates: tuple[float, ...] = ()  # open loop when given
    arrivals: str = "constant"
    max_inflight: int = 64
    window_s: float = 2.0
    window_requests: int | None = None
    tolerance: float = 0.10
    stable_windows: int = 3
    max_windows: int = 8
    warmup_s: float = 1.0
    processes: int | None = 1  # None: automatic
    seed: int = 1
    #: Which load generators take turns: "python" (facewire's own client) and "h2load".
    generators: tuple[str, ...] = ("python",)
    #: A new connection for every request instead of one kept alive per thread.
    new_connection: bool = False
    #: A Dask scheduler (tcp://host:8786): its workers generate the load, on any machine.
    scheduler: str | None = None

    @property
    def mode(self) -> str:
        return "open" if self.rates else "closed"

    @property
    def levels(self) -> tuple[float, ...]:
        return self.rates if self.rates else tuple(float(c) for c in self.concurrency)

    @property
    def series(self) -> list[tuple[str, str, ProtocolName]]:
        """(name, generator, protocol) of every series a point measures, in turn: the
        Python generator's protocols by their own names, h2load's as "rest (h2load)"."""
        out: list[tuple[str, str, ProtocolName]] = []
        for generator in self.generators:
            for protocol in self.protocols:
                if generator == "python":
                    out.append((protocol, generator, protocol))
                elif protocol in H2LOAD_PROTOCOLS:
                    out.append((f"{protocol} (h2load)", generator, protocol))
        return out


class LoadPool:
    """Worker processes that generate the load; each window is split between them."""

    def __init__(
        self,
        processes: int,
        frames: list[bytes],
        rest_url: str,
        grpc_target: str,
        new_connection: bool = False,
        ca_file: str | None = None,
    ) -> None:
        """``ca_file``: the certificate to trust, for services over TLS."""
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self.size = processes
        self._workers: list[tuple[Connection, BaseProcess]] = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=serve,
                args=(child, frames, rest_url, grpc_target, new_connection, ca_file),
                daemon=True,
            )
            process.start()
            child.close()
            self._workers.append((parent, process))

    def run(self, spec: WindowSpec) -> WindowResult:
        shares = self._split(spec)
        active = [(conn, share) for (conn, _), share in zip(self._workers, shares, strict=True)
                  if share is not None]  # fmt: skip
        for conn, share in active:
            conn.send(share)
        results = [self._receive(conn) for conn, _ in active]
        merged = results[0]
        for result in results[1:]:
            merged.merge(result)
        return merged

    def _receive(self, conn: Connection) -> WindowResult:
        """The result from one process, or a clear error if that process died."""
        process = next(p for c, p in self._workers if c is conn)
        try:
            while not conn.poll(1.0):
                if not process.is_alive():
                    break
            result: WindowResult = conn.recv()
        except (EOFError, OSError):
            process.join(5)
            raise RuntimeError(
                f"a load process died (exit code {process.exitcode}); the run stops here"
            ) from None
        return result

    def _split(self, spec: WindowSpec) -> list[WindowSpec | None]:
        return split_window(spec, self.size)

    def close(self) -> None:
        for conn, process in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            process.join(10)
            if process.is_alive():
                process.kill()
            conn.close()


def split_window(spec: WindowSpec, size: int) -> list[WindowSpec | None]:
    """A window's share for each of ``size`` load processes (local, or Dask workers);
    None for a process left idle."""
    slots = spec.concurrency if spec.concurrency is not None else spec.max_inflight
    used = max(1, min(size, slots))  # a process needs at least one slot
    budgets = [None] * used if spec.requests is None else _spread(spec.requests, used)
    shares: list[WindowSpec | None] = []
    for i, (slot_count, budget) in enumerate(zip(_spread(slots, used), budgets, strict=True)):
        if spec.concurrency is not None:
            share = replace(spec, concurrency=slot_count, requests=budget, seed=spec.seed + i)
        else:
            assert spec.rate is not None
            share = replace(
                spec, rate=spec.rate * slot_count / slots, max_inflight=slot_count,
                requests=budget, seed=spec.seed + i, offset_s=i / spec.rate,
            )  # fmt: skip
        shares.append(share)
    return shares + [None] * (size - used)


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


Progress = Callable[[str], None]


class Generator(Protocol):
    """What runs one window: a LoadPool (facewire's client) or an H2loadGenerator."""

    size: int

    def run(self, spec: WindowSpec) -> WindowResult: ...

    def close(self) -> None: ...


def measure_point(
    generators: dict[str, Generator],
    config: BenchConfig,
    model: str,
    level: float,
    progress: Progress,
) -> dict[str, list[WindowResult]]:
    """Windows A B A B … (every series in turn) until every series is stable or has had
    max_windows."""

    def spec(protocol: ProtocolName, window: int, duration: float | None) -> WindowSpec:
        closed = config.mode == "closed"
        return WindowSpec(
            protocol=protocol,
            model=model,
            concurrency=int(level) if closed else None,
            rate=None if closed else level,
            arrivals=config.arrivals,
            max_inflight=config.max_inflight,
            duration_s=duration,
            requests=config.window_requests if duration is None else None,
            seed=config.seed + window,
            first_frame=window * 100_000,  # every protocol: the same frames, in the same order
        )

    for _, generator, protocol in config.series:  # warm-up: connections and caches, never counted
        generators[generator].run(replace(spec(protocol, 0, config.warmup_s), requests=None))
    windows: dict[str, list[WindowResult]] = {name: [] for name, _, _ in config.series}
    duration = None if config.window_requests else config.window_s
    for k in range(config.max_windows):
        for name, generator, protocol in config.series:
            windows[name].append(generators[generator].run(spec(protocol, k, duration)))
            progress(name)
        if all(is_stable(w, config.stable_windows, config.tolerance) for w in windows.values()):
            break
    return windows


def point_rows(
    windows: dict[str, list[WindowResult]],
    config: BenchConfig,
    *,
    model: str,
    level: float,
    encode_ms: float,
    floor: dict[str, float] | None,
) -> list[dict[str, object]]:
    """One row per protocol, from its last ``stable_windows`` windows, with paired ratios
    against the first protocol."""
    rows = []
    baseline = config.series[0][0]
    generator_of = {name: generator for name, generator, _ in config.series}
    k = config.stable_windows
    for name, all_windows in windows.items():
        counted = all_windows[-k:]
        stable = is_stable(all_windows, k, config.tolerance)
        row: dict[str, object] = {"model": model, "mode": config.mode, "level": level,
                                  "generator": generator_of[name]}  # fmt: skip
        row.update(summarise(counted, stable=stable, encode_ms=encode_ms, cpu_limit=CPU_LIMIT))
        row["windows"] = len(all_windows)
        row["ratio_baseline"] = baseline
        row["ratio_throughput"] = paired_ratio(windows[baseline][-k:], counted, "throughput")
        row["ratio_p50"] = paired_ratio(windows[baseline][-k:], counted, "p50")
        if floor:
            latency = row["latency_ms"]
            row["efficiency"] = float(row["throughput"]) / floor["limit_throughput"]  # type: ignore[arg-type]
            # Against the lone in-process request: OpenCV's threads are on in both.
            row["floor_overhead_ms"] = (
                latency["p50"] - floor["lone_request_p50_ms"] if isinstance(latency, dict) else None
            )
        rows.append(row)
    return rows


def run_sweep(
    config: BenchConfig,
    frames: list[bytes],
    rest_url: str,
    grpc_target: str,
    *,
    encode_ms: float,
    floors: dict[str, dict[str, float]],
    progress: Callable[[str, float, str], None] = lambda *_: None,
    metrics_urls: tuple[str, str] | None = None,
) -> list[dict[str, object]]:
    """Every point of the sweep. With automatic processes, a point where the Python
    generator was the bottleneck is measured again with twice the processes (up to the
    core count). h2load needs the services' metrics (``metrics_urls``: REST's, gRPC's)."""
    processes = config.processes or 1

    def python_pool(size: int) -> Generator:
        if config.scheduler is not None:
            from client.bench.distributed import DaskPool  # only with a scheduler: Dask is big

            return DaskPool(config.scheduler, frames, rest_url, grpc_target, config.new_connection)
        return LoadPool(size, frames, rest_url, grpc_target, config.new_connection)

    generators: dict[str, Generator] = {"python": python_pool(processes)}
    if "h2load" in config.generators:
        if metrics_urls is None:
            raise RuntimeError("h2load needs the services' metrics URLs (--grpc-metrics-url)")
        generators["h2load"] = H2loadGenerator(frames, rest_url, grpc_target, *metrics_urls)
    rows: list[dict[str, object]] = []
    try:
        for model in config.models:
            for level in config.levels:
                while True:
                    report = _reporter(progress, model, level)
                    windows = measure_point(generators, config, model, level, report)
                    point = point_rows(windows, config, model=model, level=level,
                                       encode_ms=encode_ms, floor=floors.get(model))  # fmt: skip
                    pool = generators["python"]
                    bound = any(r["client_bound"] for r in point if r["generator"] == "python")
                    auto = config.processes is None and config.scheduler is None
                    if auto and bound and pool.size * 2 <= cores():
                        pool.close()
                        generators["python"] = python_pool(pool.size * 2)
                        continue
                    rows.extend(point)
                    break
    finally:
        for generator in generators.values():
            generator.close()
    return rows


def _reporter(progress: Callable[[str, float, str], None], model: str, level: float) -> Progress:
    return lambda protocol: progress(model, level, protocol)


def config_dict(config: BenchConfig) -> dict[str, object]:
    return {**asdict(config), "mode": config.mode}
