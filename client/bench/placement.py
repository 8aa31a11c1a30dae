"""``make docker-bench``: what Docker's networking costs each protocol, in one run.

The same services three ways, measured in turn, window by window:

- ``local``: ``python -m rest_service`` and ``python -m grpc_service``, processes on
  loopback (as ``make run`` starts them);
- ``published``: the compose stack's containers through their published ports, the way
  ``make docker-up`` serves them (Docker's userland proxy, its default for 127.0.0.1);
- ``host network``: the same images on the host's own network stack (no proxy, no NAT).

For each model and protocol, requests go one at a time (concurrency 1) to each way in
turn, the order rotating, so that all three meet the same moments of a shared machine.
A way's cost is the median of its per-request differences from local, with a 95 %
confidence interval.

    python -m client.bench.placement [--echo-requests 3000] [--haar-requests 150]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from client.bench import FACE, machine
from client.bench.alternate import alternate
from client.bench.servers import facewire_services
from client.processes import free_port
from client.transports import PROTOCOLS, make_transport

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "scripts" / "compose.sh"
WAYS = ("local", "published", "host network")
LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def compose_stack(project: str, storage: Path, env: dict[str, str]) -> Iterator[None]:
    """A compose project of this checkout, up (healthy) for the block, then down."""
    full = {**os.environ, "COMPOSE_PROJECT_NAME": project,
            "FACEWIRE_STORAGE": str(storage), **env}  # fmt: skip
    for inherited in ("FACEWIRE_UID", "FACEWIRE_GID", "FACEWIRE_AUTH_TOKEN"):
        full.pop(inherited, None)
    # Fixed argv: this checkout's own script; the settings go through the environment.
    up = subprocess.run([COMPOSE, "up"], env=full, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        if up.returncode != 0:
            raise RuntimeError(f"{project}: make docker-up failed:\n{up.stderr[-3000:]}")
        yield
    finally:
        subprocess.run([COMPOSE, "down"], env=full, capture_output=True, check=False)  # noqa: S603


@contextlib.contextmanager
def three_ways(workdir: Path) -> Iterator[dict[str, tuple[str, str]]]:
    """(REST URL, gRPC target) of each way, all running at once."""
    published = {k: free_port() for k in ("rest", "grpc", "metrics")}
    host = {k: free_port() for k in ("rest", "grpc", "metrics")}
    published_env = {f"FACEWIRE_PUBLISH_{k.upper()}_PORT": str(v) for k, v in published.items()}
    host_env = {f"FACEWIRE_HOST_{k.upper()}_PORT": str(v) for k, v in host.items()}
    host_env["FACEWIRE_SERVICES"] = "rest-host grpc-host"
    with (
        facewire_services(workdir) as (url, target, _, _),
        compose_stack("facewire-bench-published", workdir / "published", published_env),
        compose_stack("facewire-bench-host", workdir / "host", host_env),
    ):
        yield {"local": (url, target), "published": _loopback(published),
               "host network": _loopback(host)}  # fmt: skip


def _loopback(ports: dict[str, int]) -> tuple[str, str]:
    return f"http://{LOOPBACK}:{ports['rest']}", f"{LOOPBACK}:{ports['grpc']}"


def measure(
    ways: dict[str, tuple[str, str]], requests: dict[str, int], console: Console
) -> tuple[list[dict[str, object]], Counter[str]]:
    """One row per model and protocol: each way's median latency, and the median of the
    per-request differences from local (with its 95 % interval)."""
    image = FACE.read_bytes()
    errors: Counter[str] = Counter()
    table = []
    for model, count in requests.items():
        for protocol in PROTOCOLS:
            console.print(f"{model} {protocol}: {count} requests to each way, alternating")
            clients = {way: make_transport(protocol, *ways[way]) for way in WAYS}
            try:
                taken = alternate(clients, [image], model, count)
            finally:
                for client in clients.values():
                    client.close()
            errors.update({f"{protocol} {kind}": n for kind, n in taken.errors.items()})
            row: dict[str, object] = {"model": model, "protocol": protocol, "requests": count}
            for way in WAYS:
                row[f"{way} p50 ms"] = round(taken.p50(way), 3)
            for way in WAYS[1:]:
                middle, low, high = taken.difference(way, "local")
                row[f"{way} cost ms"] = round(middle, 3)
                row[f"{way} cost 95% ms"] = [round(low, 3), round(high, 3)]
            table.append(row)
    return table, errors


def markdown(table: list[dict[str, object]]) -> str:
    lines = [
        "| model | protocol | local p50 | published p50 | published cost | host network p50 "
        "| host network cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        cells = [row["model"], row["protocol"], row["local p50 ms"], row["published p50 ms"],
                 _cost(row, "published"), row["host network p50 ms"],
                 _cost(row, "host network")]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def report(document: dict[str, Any]) -> str:
    """placement.md's table from a run's placement.json (docs/docker.md quotes one)."""
    return markdown(document["rows"])


def _cost(row: dict[str, object], way: str) -> str:
    interval = row[f"{way} cost 95% ms"]
    assert isinstance(interval, list)
    low, high = interval
    return f"{row[f'{way} cost ms']:+.3f} ({low:+.3f} to {high:+.3f})"


def print_table(table: list[dict[str, object]], console: Console) -> None:
    out = Table(title="facewire: local processes vs containers, p50 ms at concurrency 1")
    columns = ("model", "protocol", "local p50 ms", "published p50 ms", "published cost ms",
               "host network p50 ms", "host network cost ms")  # fmt: skip
    for column in columns:
        out.add_column(column)
    for row in table:
        cells = {**row, "published cost ms": _cost(row, "published"),
                 "host network cost ms": _cost(row, "host network")}  # fmt: skip
        out.add_row(*(str(cells[c]) for c in columns))
    console.print(out)


def docker_versions() -> dict[str, str]:
    found = {}
    for name, argv in (("engine", ["docker", "version", "--format", "{{.Server.Version}}"]),
                       ("compose", [str(COMPOSE), "--", "version", "--short"])):  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        found[name] = done.stdout.strip() or "unknown"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.bench.placement",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument(
        "--echo-requests",
        type=int,
        default=3000,
        help="model echo: requests to each way, per protocol",
    )
    parser.add_argument("--haar-requests", type=int, default=150,
                        help="model haar: the same (0: none)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="default bench-results/docker-<UTC time>")
    args = parser.parse_args(argv)
    requests = {m: n for m, n in (("echo", args.echo_requests), ("haar", args.haar_requests)) if n}
    console = Console(width=None if sys.stdout.isatty() else 150)
    engine = subprocess.run(["docker", "info"], capture_output=True, check=False)  # noqa: S607
    if engine.returncode != 0:
        console.print("[red]docker-bench: no Docker engine answers (make docker-engine)[/red]")
        return 2
    out = args.out or ROOT / "bench-results" / datetime.now(UTC).strftime("docker-%Y%m%dT%H%M%SZ")
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="facewire-docker-bench-") as workdir:
            console.print("starting the local services and two compose stacks (a minute)")
            with three_ways(Path(workdir)) as ways:
                table, errors = measure(ways, requests, console)
    except RuntimeError as error:
        console.print(f"[red]docker-bench: {error}[/red]")
        return 1
    document = {
        **machine.run_record("facewire_docker_bench", started),
        "requests": requests,
        "docker": docker_versions(),
        "rows": table,
        "errors": dict(errors),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "placement.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "placement.md").write_text(markdown(table))
    print_table(table, console)
    if errors:
        console.print(f"[red]errors: {dict(errors)}[/red]")
    console.print(f"results in {out}/ (placement.json, placement.md)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
