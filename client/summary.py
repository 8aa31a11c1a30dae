"""The per-protocol summary printed on quit, and optionally written as CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from client.stats import Summary

COLUMNS = ("protocol", "count", "p50_ms", "p95_ms", "p99_ms", "throughput_rps", "errors")


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def rows(summaries: Sequence[Summary]) -> list[list[str]]:
    return [
        [s.protocol, str(s.count), _cell(s.p50), _cell(s.p95), _cell(s.p99),
         _cell(s.throughput), str(s.errors)]
        for s in summaries
    ]  # fmt: skip


def print_table(
    summaries: Sequence[Summary], console: Console | None = None, link: str = "loopback"
) -> None:
    table = Table(title="facewire: end-to-end latency per protocol (ms)", caption=f"link: {link}")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for row in rows(summaries):
        table.add_row(*row)
    (console or Console()).print(table)


def write_csv(summaries: Sequence[Summary], path: Path, link: str = "loopback") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, "link"])
        writer.writerows([*row, link] for row in rows(summaries))
