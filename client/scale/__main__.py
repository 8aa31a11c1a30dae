"""``make scale``: two replicas of each service behind nginx; how requests spread per
balancing, the proxy's cost, and a replica killed under load. Prints the tables and
writes ``scale-results/<time>/`` (scale.md, scale.json); exits 1 when per-request
balancing does not spread evenly, TCP balancing does not pin, or an audit fails."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from client.bench import FACE
from client.scale.run import fleet, kill_one_under_load, proxy_costs, spreads


def report(document: dict[str, Any]) -> str:
    """scale.md's tables from a run's scale.json (docs/scaling.md quotes one)."""
    lines = ["| how | protocol | requests per replica | shares | even | errors |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for s in document["spreads"]:
        shares = " / ".join(f"{x:.0%}" for x in s["shares"])
        lines.append(f"| {s['how']} | {s['protocol']} | {s['per_replica']} | {shares} | "
                     f"{'yes' if s['even'] else 'no'} | {s['errors']} |")  # fmt: skip
    lines += ["", "| protocol | direct p50 ms | through nginx p50 ms | the proxy's cost ms |",
              "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {c['protocol']} | {c['direct_p50_ms']:.3f} | {c['proxied_p50_ms']:.3f} | "
              f"{c['cost_ms']:+.3f} |" for c in document["proxy_costs"]]  # fmt: skip
    lines += ["", "| replica killed under load | answered (each saved) | errors the client saw |",
              "|---|---|---|"]  # fmt: skip
    lines += [f"| {f['protocol']} | {f['answered']} | {f['errors'] or 'none'} |"
              for f in document["faults"]]  # fmt: skip
    lines += ["", f"Audit of every replica's storage: {document['audit_problems'] or 'intact'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.scale", description=__doc__)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="per spread measurement")
    parser.add_argument("--quick", action="store_true", help="short: for the tests")
    parser.add_argument("--out", type=Path, help="default scale-results/<time>")
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("scale-results") / stamp
    frame = FACE.read_bytes()
    seconds = 1.0 if args.quick else args.seconds
    with fleet(out / "work", args.replicas) as replicas:
        spread = spreads(replicas, seconds, frame)
        costs = proxy_costs(replicas, 100 if args.quick else 400, 3 if args.quick else 5, frame)
        faults, problems = kill_one_under_load(replicas, 3.0 if args.quick else 6.0, frame)
    document = {"spreads": [asdict(s) | {"even": s.even, "shares": s.shares} for s in spread],
                "proxy_costs": [asdict(c) | {"cost_ms": c.cost_ms} for c in costs],
                "faults": [asdict(f) for f in faults], "audit_problems": problems}  # fmt: skip
    table = report(document)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.md").write_text(table)
    (out / "scale.json").write_text(json.dumps(document, indent=2) + "\n")
    print(table)
    print(f"results in {out}/ (scale.md, scale.json)")
    by_how = {(s.how.split(" (")[0], s.protocol): s for s in spread}
    pinned = [s for s in spread if "TCP, per connection" in s.how]
    ok = (all(s.even for s in spread if "per request" in s.how or "round_robin" in s.how)
          and all(max(s.shares) == 1.0 for s in pinned) and not problems and by_how)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
