"""``make soak``: both services under mixed traffic for a long time, then an audit.

``python -m client.bench.soak [--duration 600] [--interval 10] [--out soak-results]``
starts both services on free loopback ports and sends, open loop at fixed rates:
every protocol (REST, gRPC unary and stream, both Open Inference Protocol ones), a part
of it saving frames, and a trickle of hostile requests (corrupt, random, oversized,
unknown model) that must be refused with a clear error. Each interval it records the
requests sent and answered, the errors by kind, p50/p99 latency (measured from each
request's intended send time, so a stall is not hidden) and each service's resident
memory. At the end it drains the services and audits the storage folder: every
answered save must have exactly one row and one complete image, every row a complete
image. It writes ``soak.json``, ``soak.md`` and ``soak.png`` into ``--out`` and exits
1 if anything was lost, duplicated, torn, answered wrongly, or if memory kept growing.

The modules: ``traffic`` (what is sent), ``ledger`` (what came back, by interval),
``run`` (the services and the clock), ``verdict`` (totals, audit, memory) and
``report`` (table, Markdown, plot); ``__main__`` runs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float
    interval_s: float
    rate: float  # requests per second per protocol
    hostile_rate: float
    save_every: int
    out: Path
