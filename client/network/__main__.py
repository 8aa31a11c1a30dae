"""``make linkcheck``: what the link engine carries on this machine, and, for each named
profile, whether the link it makes does what the profile says (or why it is refused).

    python -m client.network [--link-engine wirefilter] [--network lte] [--out DIR]
    python -m client.network report DIR      # the table again, from DIR/linkcheck.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client.bench import machine
from client.network import limits, linkcheck
from client.network.namespace import (
    ENGINES,
    NetworkError,
    ServiceNetwork,
    choose_engine,
    preflight,
)
from client.network.profiles import PROFILES, ProfileError

RESULTS_JSON, REPORT_MD = "linkcheck.json", "linkcheck.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m client.network", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--link-engine", choices=("auto", *ENGINES), default="auto")
    named = [name for name in PROFILES if name != "loopback"]
    p.add_argument("--network", action="append", choices=named,
                   help="a profile to check (again for more); default: all")  # fmt: skip
    p.add_argument("--out", type=Path, help="default: linkcheck-results/<UTC time>/")
    return p


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    names = args.network or [name for name in PROFILES if name != "loopback"]
    engines = sorted({choose_engine(args.link_engine, PROFILES[name]) for name in names})
    measured = {}
    for name_of_engine in engines:
        found = limits.measure(name_of_engine)
        limits.remember(found)
        measured[name_of_engine] = found.as_dict()
        print(f"engine: {found.describe()}", flush=True)
    rows: list[dict[str, Any]] = []
    for name in names:
        profile = PROFILES[name]
        row: dict[str, Any] = {"profile": profile.as_dict()}
        try:
            chosen = preflight(profile, args.link_engine)
            with ServiceNetwork(profile, engine=chosen or "auto") as network:
                checked = linkcheck.check(network)
                row |= {"engine": network.describe_engine(), "check": checked.as_dict()}
            print(f"{name}: {checked.describe()}", flush=True)
        except (ProfileError, NetworkError) as error:
            row["refused"] = str(error)
            print(f"{name}: refused: {error}", flush=True)
        rows.append(row)
    result = {
        **machine.run_record("facewire_linkcheck", started.timestamp()),
        "command": "python -m client.network " + " ".join(sys.argv[1:]),
        "requested_engine": args.link_engine,
        "limits": measured,
        "profiles": rows,
    }
    out: Path = args.out or Path("linkcheck-results") / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    (out / REPORT_MD).write_text(report(result))
    print(f"results in {out}/ ({RESULTS_JSON}, {REPORT_MD})")
    disagreeing = [r["profile"]["name"] for r in rows if "check" in r and not r["check"]["agrees"]]
    if disagreeing:
        print(f"facewire linkcheck: not as their profiles say: {', '.join(disagreeing)}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def report(result: dict[str, Any]) -> str:
    """The markdown table of a run, from its JSON alone."""
    lines = [
        "| engine | what it carries on this machine |",
        "|---|---|",
        *(f"| {engine} | {found['description']} |" for engine, found in result["limits"].items()),
        "",
        "| profile | engine | round trip set / measured (ms) | loss set / up / down (%) "
        "| rates down / up: measured ÷ expected time | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["profiles"]:
        profile = row["profile"]
        if "refused" in row:
            lines.append(f"| {profile['name']} | – | – | – | – | refused: {row['refused']} |")
            continue
        check = linkcheck.LinkCheck.from_dict(row["check"])
        trip = check.round_trip
        rates = " / ".join(
            f"{check.rates[d].ratio:.2f}" if d in check.rates else "not shaped"
            for d in ("down", "up")
        )
        verdict = "agrees" if check.agrees else "**does not agree**"
        lines.append(
            f"| {profile['name']} | {check.engine} | {trip.setting_ms:g} / {trip.measured_ms:.1f} "
            f"| {profile['loss_pct']:g} / {check.loss['up'].measured_pct:.1f} / "
            f"{check.loss['down'].measured_pct:.1f} | {rates} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        if len(argv) != 2:
            print("usage: python -m client.network report DIR", file=sys.stderr)
            return 2
        print(report(json.loads((Path(argv[1]) / RESULTS_JSON).read_text())), end="")
        return 0
    try:
        return run(parser().parse_args(argv))
    except (ProfileError, NetworkError) as error:
        print(f"facewire linkcheck: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
