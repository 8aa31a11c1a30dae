"""One perf window: run it, summarise it, count what it served and what failed."""

from __future__ import annotations

from client.bench.load import WindowResult, WindowSpec
from client.bench.measure import summarise
from client.bench.perf.targets import Results
from client.bench.runner import CPU_LIMIT, LoadPool
from client.transports import ProtocolName


def run_window(pool: LoadPool, protocol: ProtocolName, model: str, concurrency: int,
            *, seconds: float | None = None, requests: int | None = None,
            seed: int = 1) -> WindowResult:  # fmt: skip
    spec = WindowSpec(protocol=protocol, model=model, concurrency=concurrency, rate=None,
                      duration_s=seconds, requests=requests, seed=seed)  # fmt: skip
    return pool.run(spec)


def summarise_one(result: WindowResult) -> dict[str, object]:
    return summarise([result], stable=True, encode_ms=0.0, cpu_limit=CPU_LIMIT)


def p50(summarised: dict[str, object], key: str = "latency_ms") -> float:
    latency = summarised[key]
    assert isinstance(latency, dict), f"no answers: {summarised.get('errors')}"
    return float(latency["p50"])


def count(results: Results, service: str, result: WindowResult) -> None:
    results.served[service] += result.completed + sum(result.errors.values())
    count_errors(results, result)


def count_errors(results: Results, result: WindowResult, server: str = "") -> None:
    """Failed requests, by protocol and kind; ``server`` names a reference server, whose
    failures count too (a broken reference would otherwise only show as a ratio)."""
    for kind, n in result.errors.items():
        results.errors[f"{server}{result.protocol} {kind}"] += n


def turn(protocols: tuple[ProtocolName, ...], r: int) -> tuple[ProtocolName, ...]:
    """Round ``r``'s order: each protocol goes first in turn, so none always follows the
    floor measurement or another protocol."""
    k = r % len(protocols)
    return protocols[k:] + protocols[:k]


def service_of(protocol: str) -> str:
    return "rest" if protocol == "rest" else "grpc"


def throughput(result: WindowResult) -> float:
    return result.completed / result.elapsed_s if result.elapsed_s else 0.0
