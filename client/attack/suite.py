"""Runs every attack against both services while the well-behaved client measures, and
judges each against the bounds below; ``make attack`` prints the table."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from client.attack.attacks import ATTACKS, Scale
from client.attack.bystander import P99_SAMPLES, PROTOCOLS, Bystander
from client.attack.wire import Target
from client.bench.servers import facewire_services, self_signed_certificate
from client.processes import Child
from facewire.audit import audit
from facewire.settings import MiB

#: The well-behaved client's p99 under attack may be this many times its idle p99 (taken
#: in the same run; at least 5 ms, so that a fast idle run is not a tiny yardstick).
P99_FACTOR = 10.0
P99_FLOOR_MS = 5.0
#: Peak resident memory over the resident memory before the attack, per service.
MEMORY_BUDGET = 100 * MiB
UPLOAD_BUDGET = 150 * MiB  # large-uploads: the gRPC message budget's documented bound
#: Shorter than the defaults, so that each deadline shows within an attack's window.
SETTINGS = {
    "FACEWIRE_HEADER_TIMEOUT_S": "2",
    "FACEWIRE_BODY_TIMEOUT_S": "2",
    "FACEWIRE_HANDSHAKE_TIMEOUT_S": "2",
    "FACEWIRE_LOG_LEVEL": "warning",
}
#: What bounds each attack, per service (the setting, or the library that does it).
BOUNDS = {
    "rapid-reset": ("not HTTP/2: the preface is refused", "grpc core (CVE-2023-44487 fix)"),
    "continuation-flood": ("not HTTP/2", "grpc core's metadata limit"),
    "hpack-bomb": ("not HTTP/2", "grpc core's metadata limit"),
    "settings-flood": ("not HTTP/2", "grpc core"),
    "ping-flood": ("not HTTP/2", "grpc core's cap on unanswered frames"),
    "never-ending-streams": ("not HTTP/2", "FACEWIRE_HTTP2_MAX_CONCURRENT_STREAMS, lookahead"),
    "too-many-streams": ("not HTTP/2", "FACEWIRE_HTTP2_MAX_CONCURRENT_STREAMS"),
    "slowloris": ("FACEWIRE_HEADER_TIMEOUT_S", "not HTTP/1.1: closed"),
    "conflicting-lengths": ("httptools (rejects both headers)", "not HTTP/1.1: closed"),
    "short-body": ("FACEWIRE_BODY_TIMEOUT_S", "not HTTP/1.1: closed"),
    "pipelined-flood": ("FACEWIRE_MAX_PIPELINED_REQUESTS", "not HTTP/1.1: closed"),
    "no-handshake": ("FACEWIRE_HANDSHAKE_TIMEOUT_S", "FACEWIRE_HANDSHAKE_TIMEOUT_S"),
    "idle-flood": (
        "FACEWIRE_HEADER_TIMEOUT_S, FACEWIRE_MAX_CONNECTIONS",
        "FACEWIRE_MAX_CONNECTIONS",
    ),
    "large-uploads": ("FACEWIRE_UPLOAD_BUDGET_BYTES", "FACEWIRE_UPLOAD_BUDGET_BYTES"),
}


@dataclass
class Row:
    attack: str
    speaks: str
    service: str
    outcome: str
    #: Per protocol: the quantile its samples support (0.99 from 500 on), its value at
    #: idle and under attack, and the samples under attack.
    quantile: dict[str, float]
    idle_ms: dict[str, float]
    attack_ms: dict[str, float]
    samples: dict[str, int]
    errors: list[str]
    memory_mib: float
    bound: str
    alive: bool

    def limit_ms(self, protocol: str) -> float:
        return P99_FACTOR * max(self.idle_ms[protocol], P99_FLOOR_MS)

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.alive:
            found.append("service died")
        if self.errors:
            found.append(f"{len(self.errors)} errors")
        for protocol, value in self.attack_ms.items():
            limit = self.limit_ms(protocol)
            if not math.isnan(value) and value > limit:
                found.append(f"{protocol} {_q(self.quantile[protocol])} {value:.0f} ms > "
                             f"{limit:.0f} ms")  # fmt: skip
        budget = UPLOAD_BUDGET if self.attack == "large-uploads" else MEMORY_BUDGET
        if self.memory_mib * MiB > budget:
            found.append(f"memory +{self.memory_mib:.0f} MiB > {budget // MiB} MiB")
        return found


@dataclass
class Report:
    rows: list[Row]
    versions: dict[str, str]
    tracebacks: dict[str, int]
    exit_codes: dict[str, int]
    audit_problems: list[str]
    saved_rows: int

    @property
    def ok(self) -> bool:
        return (not any(r.problems for r in self.rows) and not any(self.tracebacks.values())
                and not any(self.exit_codes.values()) and not self.audit_problems)  # fmt: skip


def _q(quantile: float) -> str:
    return f"p{100 * quantile:g}"


def _peak_reset(child: Child) -> int:
    """Reset the peak resident memory (VmHWM) to now; the resident bytes now."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{child.popen.pid}/clear_refs").write_text("5")
    return int(child.rss_mib() * MiB)


def _peak(child: Child) -> int:
    status = Path(f"/proc/{child.popen.pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


@contextlib.contextmanager
def _stage(
    workdir: Path, frame: bytes
) -> Iterator[tuple[dict[str, Target], dict[str, Child], Bystander]]:
    cert, key = self_signed_certificate(workdir)
    env = {**SETTINGS, "FACEWIRE_TLS_CERT_FILE": str(cert), "FACEWIRE_TLS_KEY_FILE": str(key),
           "FACEWIRE_TLS_CA_FILE": str(cert)}  # fmt: skip
    os.environ["FACEWIRE_TLS_CA_FILE"] = str(cert)  # this process's readiness checks trust it
    with facewire_services(workdir, env) as (url, target, rest, grpc_child):
        host, rest_port = url.removeprefix("https://").rsplit(":", 1)
        targets = {
            "rest": Target("rest", host, int(rest_port), cert),
            "grpc": Target("grpc", host, int(target.rsplit(":", 1)[1]), cert),
        }
        bystander = Bystander(url, target, cert, frame)
        try:
            yield targets, {"rest": rest, "grpc": grpc_child}, bystander
        finally:
            bystander.close()


def run(
    workdir: Path,
    frame: bytes,
    seconds: float,
    scale: Scale,
    only: list[str] | None = None,
    say: Callable[[str], object] = print,
) -> Report:
    rows: list[Row] = []
    workdir.mkdir(parents=True, exist_ok=True)
    with _stage(workdir, frame) as (targets, children, bystander):
        bystander.start(seconds + 0.5)  # as long as an attack's window: as many samples
        idle_served = bystander.result()
        saved = sum(s.saved for s in idle_served.values())
        say("idle: " + ", ".join(f"{p} {_q(s.quantile())} {s.tail():.1f} ms "
                                 f"({len(s.latencies_ms)} samples)"
                                 for p, s in idle_served.items()))  # fmt: skip
        for name, (speaks, attack) in ATTACKS.items():
            if only and name not in only:
                continue
            for service in ("rest", "grpc"):
                before = {s: _peak_reset(c) for s, c in children.items()}
                bystander.start(seconds + 0.5)
                try:
                    outcome = attack(targets[service], seconds, scale)
                except Exception as exc:  # the attacker's failure is a finding, not a crash
                    outcome = f"attack failed: {exc.__class__.__name__}: {exc}"[:200]
                served = bystander.result()
                saved += sum(s.saved for s in served.values())
                growth = (_peak(children[service]) - before[service]) / MiB
                # Each protocol's quantile: the one both its windows have samples for.
                quantile: dict[str, float] = {
                    p: min(s.quantile(), idle_served[p].quantile()) for p, s in served.items()
                }
                row = Row(
                    name, speaks, service, outcome, quantile,
                    {p: round(idle_served[p].tail(quantile[p]), 2) for p in PROTOCOLS},
                    {p: round(served[p].tail(quantile[p]), 2) for p in PROTOCOLS},
                    {p: len(s.latencies_ms) for p, s in served.items()},
                    [e for s in served.values() for e in s.errors], round(growth, 1),
                    BOUNDS[name][service == "grpc"],
                    all(c.popen.poll() is None for c in children.values()),
                )  # fmt: skip
                rows.append(row)
                verdict = row.problems or "holds"
                say(f"{name:>22} → {service:<4} {verdict}: {outcome}")
        exit_codes = {s: c.stop() for s, c in children.items()}
        logs = {s: c.output for s, c in children.items()}
    found = audit(workdir / "storage")
    return Report(
        rows=rows,
        versions=versions(),
        tracebacks={s: text.count("Traceback") for s, text in logs.items()},
        exit_codes=exit_codes,
        audit_problems=found.problems
        + ([] if len(found.rows) >= saved else [f"{saved} saves answered, {len(found.rows)} rows"]),
        saved_rows=len(found.rows),
    )


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("grpcio", "uvicorn", "httptools", "h11", "h2")}


def document(report: Report) -> dict[str, Any]:
    """The run as JSON: what ``make attack`` writes and docs/reliability.md quotes."""
    return asdict(report) | {"ok": report.ok}


def write(report: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = document(report)
    (out / "attack.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "attack.md").write_text(table(result))


def table(result: dict[str, Any]) -> str:
    """The table of a run's JSON, its verdicts judged by the bounds above."""
    names = {f.name for f in fields(Report)}
    assert set(result) - {"ok"} == names, "a result from another version of the suite"
    report = Report(**{**{k: result[k] for k in names}, "rows": [Row(**r) for r in result["rows"]]})
    columns = ("attack", "speaks", "service", "what the service did",
               "well-behaved client, REST / gRPC: ms idle → under attack (quantile, samples)",
               "errors", "peak memory MiB", "bounded by", "verdict")  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for r in report.rows:
        tails = " / ".join(
            f"{r.idle_ms[p]:.1f} → {r.attack_ms[p]:.1f} ({_q(r.quantile[p])}, {r.samples[p]})"
            for p in PROTOCOLS
        )
        verdict = "holds" if not r.problems else "; ".join(r.problems)
        cells = (r.attack, r.speaks, r.service, r.outcome, tails, str(len(r.errors)),
                 f"+{r.memory_mib:.0f}", r.bound, verdict)  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report.versions.items())}.",
        f"- Tracebacks in the services' logs: {report.tracebacks}; "
        f"exit codes after the drain: {report.exit_codes}.",
        f"- Audit of the storage folder: {report.saved_rows} rows; "
        f"problems: {report.audit_problems or 'none'}.",
        f"- Bounds: no error; each protocol's tail latency (p99 from {P99_SAMPLES} samples; "
        f"with fewer, the quantile shown) within {P99_FACTOR:g}× the same quantile at idle "
        f"(at least {P99_FLOOR_MS:g} ms); peak memory within {MEMORY_BUDGET // MiB} MiB of "
        f"the resident memory before the attack ({UPLOAD_BUDGET // MiB} MiB for "
        f"large-uploads). Verdict: **{'every bound holds' if report.ok else 'a bound fails'}**.",
    ]
    return "\n".join(lines) + "\n"
