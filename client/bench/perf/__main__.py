"""``make perf``: ``python -m client.bench.perf [--quick] [--rounds N] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

import client.bench.perf
from client.bench import FACE, machine
from client.bench.perf.pipeline import measure_pipeline
from client.bench.perf.report import markdown, print_table, rows
from client.bench.perf.services import measure_services
from client.bench.perf.targets import Plan, Results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m client.bench.perf",
        description=client.bench.perf.__doc__,
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
        console.print("the pipeline alone: the fast decodes against the specified one")
        measure_pipeline(image, plan, results)
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
