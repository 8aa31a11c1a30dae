"""``make soak``: ``python -m client.bench.soak [--duration 600] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from client.bench.soak import SoakConfig
from client.bench.soak.report import markdown, plot, print_summary
from client.bench.soak.run import run
from client.transports import ALL_PROTOCOLS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--interval", type=float, default=10.0, help="report every N seconds")
    parser.add_argument(
        "--rate", type=float, default=6.0, help="requests/s per protocol (5 protocols)"
    )
    parser.add_argument("--hostile-rate", type=float, default=2.0, help="bad requests/s")
    parser.add_argument("--save-every", type=int, default=5, help="save one request in N (0: none)")
    parser.add_argument("--out", type=Path, help="default soak-results/<UTC time>")
    args = parser.parse_args(argv)
    out = args.out or Path("soak-results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    config = SoakConfig(
        args.duration, args.interval, args.rate, args.hostile_rate, args.save_every, out
    )
    console = Console()
    console.print(
        f"soak: {config.duration_s:.0f} s, {config.rate:g}/s on each of {len(ALL_PROTOCOLS)} "
        f"protocols, one in {config.save_every} saving, {config.hostile_rate:g}/s hostile; "
        f"pid {os.getpid()}"
    )
    result = run(config, console)
    print_summary(result, console)
    (config.out / "soak.json").write_text(json.dumps(result, indent=1))
    (config.out / "soak.md").write_text(markdown(result))
    plot(result, config.out / "soak.png")
    console.print(f"wrote {config.out}/soak.json, soak.md, soak.png")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
