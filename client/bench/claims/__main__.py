"""``make claims``: ``python -m client.bench.claims [--quick] [--out DIR]``; ``... report
DIR`` rebuilds a run's claims.md and plot from its claims.json.

Runs the fixed plan (every experiment in ``experiments``, against the services of
``stage``), decides each claim's verdict (``verdicts``) and writes
``claims-results/<UTC time>/claims.md``, ``claims.json``, ``sizes.png`` and
``factorial.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from client.bench import machine
from client.bench.claims import CLAIMS, experiments, report
from client.bench.claims.stage import stage
from client.bench.claims.verdicts import RULES, Verdict
from client.network import linkcheck


def decide(document: dict[str, Any]) -> dict[str, Verdict]:
    """Each claim's verdict from the document's results, by the rules as they are now."""
    return {claim.key: RULES[claim.key](document["results"]) for claim in CLAIMS}


def render(document: dict[str, Any]) -> str:
    """claims.md from the document alone (docs/claims.md quotes it)."""
    return report.markdown(document["results"], decide(document), document["conditions"])


def write(out: Path, document: dict[str, Any]) -> dict[str, Verdict]:
    """claims.json, claims.md and sizes.png in ``out``, the verdicts decided from the
    document's results (so a rebuilt report follows the rules as they are now)."""
    verdicts = decide(document)
    document["verdicts"] = {k: v.__dict__ for k, v in verdicts.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(document, indent=1) + "\n")
    report.plot_sizes(document["results"], out / "sizes.png")
    report.plot_factorial(document["results"], out / "factorial.png")
    (out / "claims.md").write_text(
        render(document) + "\n![Latency against image size](sizes.png)\n"
        "\n![The factorial's effects](factorial.png)\n"
    )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"] and len(argv) == 2:  # rebuild from claims.json
        folder = Path(argv[1])
        write(folder, json.loads((folder / "claims.json").read_text()))
        print(f"rebuilt {folder}/claims.md, sizes.png and factorial.png")
        return 0
    parser = argparse.ArgumentParser(prog="python -m client.bench.claims",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="every step, briefly (tests)")
    parser.add_argument("--out", type=Path, help="default claims-results/<UTC time>")
    args = parser.parse_args(argv)
    plan = experiments.Plan.quick() if args.quick else experiments.Plan()
    out = args.out or Path("claims-results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    console = Console(width=None if sys.stdout.isatty() else 150)
    started = time.time()
    results: dict[str, object] = {}
    console.print("starting the services: loopback, loopback with TLS, and behind links")
    with stage() as places:
        for name in experiments.ORDER:
            console.print(f"experiment: {name}")
            results[name] = getattr(experiments, name)(places, plan)
        described = {name: place.describe for name, place in places.places.items()}
        missing = dict(places.missing)
        engine, checks = places.engine, places.checks
    results["haar_against_echo"] = experiments.haar_against_echo(results["rest_against_grpc"])  # type: ignore[arg-type]
    results["link_checks"] = checks
    conditions = [
        f"Run {datetime.now(UTC).isoformat(timespec='seconds')} on {machine.cpu_model()} "
        f"({machine.describe()['cores']} cores): the services and facewire's Python client "
        "on one machine.",
        "",
        *[f"- **{name}:** {text}" for name, text in described.items()],
        *[f"- **{name}:** not measured: {why}" for name, why in missing.items()],
        *[f"- **{name}, link check:** {linkcheck.LinkCheck.from_dict(check).describe()}"
          for name, check in checks.items()],
        "- **Delay and loss:** "
        + (f"made by {engine} on the delayed links (round trip in the connection, "
           "multiplexing, slow-start and loss experiments; loss only in the last)."
           if engine is not None else "not measured: no link could be made (see above)."),
        "- **Connections:** kept alive, one per client thread, except where an experiment "
        "says otherwise.",
    ]  # fmt: skip
    document = {**machine.run_record("facewire_claims", started), "plan": plan.__dict__,
                "conditions": conditions, "results": results}  # fmt: skip
    verdicts = write(out, document)
    for claim in CLAIMS:
        console.print(f"{verdicts[claim.key].status:>16}: {claim.quote}")
    console.print(f"results in {out}/ (claims.md, claims.json, sizes.png, factorial.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
