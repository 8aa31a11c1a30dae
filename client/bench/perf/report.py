"""A perf run's table: printed, and as Markdown (perf.md)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from client.bench.perf.targets import TARGETS, Results


def rows(results: Results) -> list[dict[str, object]]:
    medians = results.medians()
    out = []
    for target in TARGETS:
        for name, value in medians.get(target.key, {}).items():
            out.append({
                "target": target.key, "what": target.what, "protocol": name,
                "value": round(value, 3), "bound": target.bound_text(name),
                "met": target.met(name, value) and target.key not in results.unmet,
                "rounds": [round(v, 3) for v in results.values[target.key][name]],
            })  # fmt: skip
    return out


def print_table(table_rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title="facewire performance targets (ratios inside this run)")
    for column in ("target", "protocol", "value", "bound", "met", "what"):
        table.add_column(column)
    for row in table_rows:
        met = "[green]yes[/green]" if row["met"] else "[red]no[/red]"
        table.add_row(str(row["target"]), str(row["protocol"]), f"{row['value']}",
                      str(row["bound"]), met, str(row["what"]))  # fmt: skip
    console.print(table)


def markdown(table_rows: list[dict[str, Any]], results: Results) -> str:
    return _markdown(table_rows, results.unmet, results.medians())


def report(document: dict[str, Any]) -> str:
    """perf.md's table from a run's perf.json (docs/performance.md quotes one)."""
    return _markdown(document["targets"], document["unmet_conditions"], document["measured"])


def _markdown(table_rows: list[dict[str, Any]], unmet: dict[str, str],
              medians: dict[str, dict[str, float]]) -> str:  # fmt: skip
    lines = ["| target | protocol | value | bound | met | rounds |", "|---|---|---|---|---|---|"]
    for row in table_rows:
        rounds = ", ".join(f"{v:g}" for v in row["rounds"])
        met = "yes" if row["met"] else "**no**"
        lines.append(f"| {row['target']} | {row['protocol']} | {row['value']} | {row['bound']} | "
                     f"{met} | {rounds} |")  # fmt: skip
    lines += [f"\n{key} not met: {why}" for key, why in unmet.items()]
    targets = {t.key for t in TARGETS}
    lines += ["", "Measured alongside (medians over rounds):", "", "| measure | of | value |",
              "|---|---|---|"]  # fmt: skip
    for key, by in medians.items():
        if key not in targets:
            lines += [f"| {key} | {name} | {value:.3f} |" for name, value in by.items()]
    return "\n".join(lines) + "\n"
