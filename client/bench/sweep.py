"""The round-trip sweep: the ways users call the services, across round trips and loss.

    python -m client.bench --sweep-rtt 0,20,80,150 --sweep-loss 0,1,3 --models echo

One link (the engine the most delayed point needs makes every point, 0 ms included),
its values changed in place between points and checked at each; two pairs of services
behind it, one in clear and one over TLS. At each point and concurrency, five series
take turns window by window, as in every benchmark here:

- ``rest``: REST, connections kept alive (one per client thread);
- ``rest new connection``: REST, a new TCP connection for every request;
- ``rest TLS``: REST over TLS, kept alive;
- ``grpc``: gRPC unary calls on one channel;
- ``grpc-stream``: the bidirectional stream.

Each row has p50, p99, throughput and its sample count; the report gives the round
trips each series pays per request (the slope of its p50 against the round trip) and
a plot of p50 against round trip, one line per series.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from client.bench.runner import (
    BenchConfig,
    Generator,
    LoadPool,
    measure_point,
    point_rows,
)
from client.bench.servers import self_signed_certificate
from client.network import linkcheck
from client.network.namespace import ServiceNetwork, preflight
from client.network.profiles import Profile
from client.processes import Child
from client.readiness import answers
from client.transports import ProtocolName

RESULTS_JSON, REPORT_MD, PLOT = "sweep.json", "sweep.md", "sweep-latency.png"
#: (series, the load generator it runs on, protocol).
SERIES: list[tuple[str, str, ProtocolName]] = [
    ("rest", "clear", "rest"),
    ("rest new connection", "fresh", "rest"),
    ("rest TLS", "tls", "rest"),
    ("grpc", "clear", "grpc"),
    ("grpc-stream", "clear", "grpc-stream"),
]
#: The REST services' keep-alive in a sweep: longer than a series waits for its turn.
KEEP_ALIVE_S = 120
#: Ports inside the link's namespace: the clear pair, and the TLS pair.
CLEAR_PORTS, TLS_PORTS = (8001, 50051), (8443, 50443)


@dataclass(frozen=True)
class SweepConfig(BenchConfig):
    """A benchmark whose series are ``SERIES``, each on its own generator."""

    @property
    def series(self) -> list[tuple[str, str, ProtocolName]]:
        return list(SERIES)


@dataclass(frozen=True)
class Place:
    rest_url: str
    grpc_target: str
    ca_file: str | None = None


def _answers(place: Place) -> bool:
    return answers(place.rest_url, place.grpc_target, place.ca_file)


@contextlib.contextmanager
def _services(network: ServiceNetwork, folder: Path) -> Iterator[tuple[Place, Place]]:
    """Both pairs of services inside ``network``'s namespace, until the block ends."""
    host = network.service_ip
    cert, key = self_signed_certificate(folder, host)
    # Series take turns window by window, so each connection idles while the others
    # run (about 8 s); uvicorn's default keep-alive (5 s) would close REST's kept-alive
    # connection in between, which a camera sending continuously never sees.
    base = {"FACEWIRE_HOST": host, "FACEWIRE_LOG_LEVEL": "warning",
            "FACEWIRE_STORAGE_DIR": str(folder / "storage"),
            "FACEWIRE_KEEP_ALIVE_S": str(KEEP_ALIVE_S)}  # fmt: skip
    clear = Place(f"http://{host}:{CLEAR_PORTS[0]}", f"{host}:{CLEAR_PORTS[1]}")
    tls = Place(f"https://{host}:{TLS_PORTS[0]}", f"{host}:{TLS_PORTS[1]}", str(cert))
    envs = [
        {**base, "FACEWIRE_REST_PORT": str(CLEAR_PORTS[0]),
         "FACEWIRE_GRPC_PORT": str(CLEAR_PORTS[1])},
        {**base, "FACEWIRE_REST_PORT": str(TLS_PORTS[0]), "FACEWIRE_GRPC_PORT": str(TLS_PORTS[1]),
         "FACEWIRE_TLS_CERT_FILE": str(cert), "FACEWIRE_TLS_KEY_FILE": str(key)},
    ]  # fmt: skip
    children: list[Child] = []
    try:
        for n, (env, place) in enumerate(zip(envs, (clear, tls), strict=True)):
            child = Child("facewire.serve", env=env, prefix=network.prefix,
                          log=folder / f"services-{n}.log")  # fmt: skip
            children.append(child)
            child.wait_until(lambda p=place: _answers(p), "the services", 90)  # type: ignore[misc]
        yield clear, tls
    finally:
        for child in children:
            child.stop()


def profiles(base: Profile, rtts: list[float], losses: list[float]) -> list[Profile]:
    """Every point, loss by loss and round trip by round trip (``base``'s rates)."""
    source = f"the sweep over {base.describe()}"
    return [
        replace(base, name=f"{rtt:g} ms, {loss:g} % loss", rtt_ms=rtt, loss_pct=loss, source=source)
        for loss in losses
        for rtt in rtts
    ]


def run(
    config: BenchConfig,
    frames: list[bytes],
    base: Profile,
    rtts: list[float],
    losses: list[float],
    engine: str,
    say: Callable[[str], object],
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every point of the sweep; the result's ``points`` and ``links``."""
    config = SweepConfig(**{f: getattr(config, f) for f in config.__dataclass_fields__})
    points = profiles(base, rtts, losses)
    worst = max(points, key=lambda p: (p.rtt_ms, p.loss_pct))
    chosen = preflight(worst, engine) or engine
    rows: list[dict[str, object]] = []
    links: list[dict[str, object]] = []
    processes = config.processes or 1
    with (
        tempfile.TemporaryDirectory(prefix="facewire-sweep-") as tmp,
        ServiceNetwork(points[0], engine=chosen) as network,
        _services(network, Path(tmp)) as (clear, tls),
    ):
        generators: dict[str, Generator] = {
            "clear": LoadPool(processes, frames, clear.rest_url, clear.grpc_target),
            "fresh": LoadPool(processes, frames, clear.rest_url, clear.grpc_target, True),
            "tls": LoadPool(processes, frames, tls.rest_url, tls.grpc_target, False, tls.ca_file),
        }
        try:
            for profile in points:
                network.reshape(profile)
                say(f"link: {profile.describe()}")
                link = linkcheck.record(network, say)
                links.append({"rtt_ms": profile.rtt_ms, "loss_pct": profile.loss_pct, **link})
                for model in config.models:
                    for level in config.levels:
                        windows = measure_point(generators, config, model, level, progress)
                        point = point_rows(windows, config, model=model, level=level,
                                           encode_ms=0.0, floor=None)  # fmt: skip
                        for name, row in zip(windows, point, strict=True):
                            row.pop("histogram", None)  # the percentiles are kept
                            row |= {"series": name, "rtt_ms": profile.rtt_ms,
                                    "loss_pct": profile.loss_pct,
                                    "link_rtt_ms": link["check"]["round_trip"]["measured_ms"]}  # type: ignore[index]  # fmt: skip
                            say(_line(row))
                        rows.extend(point)
        finally:
            for generator in generators.values():
                generator.close()
    return {"points": rows, "links": links, "engine": chosen,
            "sweep": {"rtt_ms": rtts, "loss_pct": losses, "base": base.as_dict()}}  # fmt: skip


def _line(row: dict[str, Any]) -> str:
    latency = row["latency_ms"]
    return (f"{row['rtt_ms']:>5g} ms {row['loss_pct']:>3g} % c={row['level']:g} "
            f"{row['series']:>20}: p50 {latency['p50']:8.1f}  p99 {latency['p99']:8.1f}  "
            f"{row['throughput']:7.1f}/s  n={row['completed']}")  # fmt: skip


def slope_rtts(rows: list[dict[str, Any]]) -> float | None:
    """Round trips per request: the least-squares slope of p50 against the link's
    measured round trip (None with fewer than two round trips)."""
    xs = [float(r["link_rtt_ms"]) for r in rows]
    ys = [float(r["latency_ms"]["p50"]) for r in rows]
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def report(result: dict[str, Any]) -> str:
    """Tables per model, loss and concurrency (p50 / p99 ms, throughput, samples), and
    the round trips each series pays per request; all from the JSON."""
    rows: list[dict[str, Any]] = result["points"]
    rtts = sorted({r["rtt_ms"] for r in rows})
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for loss in sorted({r["loss_pct"] for r in rows}):
            for level in sorted({r["level"] for r in rows}):
                cell = [
                    r
                    for r in rows
                    if (r["model"], r["loss_pct"], r["level"]) == (model, loss, level)
                ]
                lines += [f"### {model}, {loss:g} % loss, concurrency {level:g}", "",
                          "| series | " + " | ".join(f"{x:g} ms" for x in rtts)
                          + " | round trips per request |",
                          "|---|" + "---|" * (len(rtts) + 1)]  # fmt: skip
                for series, _, _ in SERIES:
                    mine = [r for r in cell if r["series"] == series]
                    by_rtt = {r["rtt_ms"]: r for r in mine}
                    cells = [_cell(by_rtt[x]) if x in by_rtt else "–" for x in rtts]
                    slope = slope_rtts(mine)
                    lines.append(f"| {series} | " + " | ".join(cells)
                                 + f" | {'–' if slope is None else f'{slope:.2f}'} |")  # fmt: skip
                lines.append("")
    lines.append(
        "Each cell: p50 / p99 ms, answers per second, and the answers counted (the last "
        "stable windows; requests that failed, a timeout after 10 s, said so); \\* marks "
        "a point whose windows were not stable within ±10 %."
    )
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any]) -> str:
    latency = row["latency_ms"]
    mark = "" if row.get("stable") else "\\*"
    errors = f", {row['error_count']} failed" if row["error_count"] else ""
    return (f"{latency['p50']:.1f} / {latency['p99']:.1f}, {row['throughput']:.1f}/s, "
            f"n={row['completed']}{errors}{mark}")  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    """p50 against the link's round trip, one line per series; a panel per loss and
    concurrency (the first model)."""
    rows: list[dict[str, Any]] = result["points"]
    model = rows[0]["model"]
    losses = sorted({r["loss_pct"] for r in rows})
    levels = sorted({r["level"] for r in rows})
    figure, axes = plt.subplots(len(losses), len(levels), squeeze=False,
                                figsize=(5 * len(levels), 3.6 * len(losses)))  # fmt: skip
    for i, loss in enumerate(losses):
        for j, level in enumerate(levels):
            ax = axes[i][j]
            for series, _, _ in SERIES:
                mine = sorted((r for r in rows if (r["model"], r["loss_pct"], r["level"],
                               r["series"]) == (model, loss, level, series)),
                              key=lambda r: r["rtt_ms"])  # fmt: skip
                if mine:
                    xs = [r["link_rtt_ms"] for r in mine]
                    ax.plot(xs, [r["latency_ms"]["p50"] for r in mine], marker="o", label=series)
            ax.set_title(f"{model}, {loss:g} % loss, concurrency {level:g}")
            ax.set_xlabel("round trip (ms, measured)")
            ax.set_ylabel("p50 latency (ms)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(result: dict[str, Any], out: Path) -> None:
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    (out / REPORT_MD).write_text(report(result))
    plot(result, out / PLOT)
