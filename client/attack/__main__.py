"""``make attack``: every attack against both services, while a well-behaved client
measures; prints the table and writes ``attack-results/<time>/`` (attack.md, .json).
Exits 1 when a bound does not hold, or a dependency is older than its known fix."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from rich.console import Console

from client.attack.attacks import ATTACKS, Scale
from client.attack.suite import document, run, table, write
from client.attack.versions import outdated
from client.bench import FACE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.attack", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=17.0,
        help="each attack's length (17: over 500 samples a row, for a p99)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short and light: for the tests")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(ATTACKS)}")
    parser.add_argument("--out", type=Path, help="default attack-results/<time>")
    args = parser.parse_args(argv)
    console = Console()
    stale = outdated()
    if stale:
        for line in stale:
            console.print(f"[red]{line}[/red]")
        return 1
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("attack-results") / stamp
    only = args.only.split(",") if args.only else None
    unknown = set(only or ()) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    scale = Scale.quick() if args.quick else Scale()
    report = run(out / "work", FACE.read_bytes(), args.seconds, scale, only, console.print)
    write(report, out)
    console.print(table(document(report)), markup=False, highlight=False)
    console.print(f"results in {out}/ (attack.md, attack.json)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
