"""A soak's report: the table printed, soak.md, and the plot soak.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from client.transports import ALL_PROTOCOLS


def print_summary(result: dict[str, Any], console: Console) -> None:
    table = Table(title="soak: totals")
    for column in ("traffic", "sent", "answered", "errors", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in ("traffic", "errors") else "right")
    for kind, total in result["totals"].items():
        errors = ", ".join(f"{k} {v}" for k, v in total["errors"].items()) or "none"
        table.add_row(
            kind,
            str(total["sent"]),
            str(total["answered"]),
            errors,
            f"{total['p50_ms']:.1f}",
            f"{total['p99_ms']:.1f}",
            f"{total['max_ms']:.1f}",
        )
    console.print(table)
    records = result["records"]
    console.print(
        f"saves: {records['saves_sent']} sent, {records['saves_answered']} answered, "
        f"{records['rows']} rows, {records['images']} images; lost {len(records['lost'])}, "
        f"duplicated {len(records['duplicated'])}, audit problems {len(records['audit_problems'])}"
    )
    memory = result["memory"]
    for service, ratio in memory["ratio"].items():
        console.print(
            f"{service}: peak RSS {memory['first_half_max_mib'][service]:.0f} MiB in the "
            f"first half, {memory['second_half_max_mib'][service]:.0f} MiB in the second "
            f"({ratio:.3f}x)"
        )
    verdict = (
        "[green]PASSED[/]"
        if result["passed"]
        else "[red]FAILED[/]: " + "; ".join(result["failures"])
    )
    console.print(f"soak {verdict}")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Soak of {result['config']['duration_s']:.0f} s: "
        f"{result['requests']['sent']} requests sent, "
        f"{result['requests']['answered']} answered as expected.",
        "",
        "| traffic | sent | answered | errors | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for kind, t in result["totals"].items():
        errors = ", ".join(f"{k} {v}" for k, v in t["errors"].items()) or "none"
        lines.append(
            f"| {kind} | {t['sent']} | {t['answered']} | {errors} | {t['p50_ms']:.1f} | "
            f"{t['p99_ms']:.1f} | {t['max_ms']:.1f} |"
        )
    r = result["records"]
    m = result["memory"]
    lines += [
        "",
        f"Saves: {r['saves_sent']} sent, {r['saves_answered']} answered; {r['rows']} rows and "
        f"{r['images']} images stored; lost {len(r['lost'])}, duplicated {len(r['duplicated'])}, "
        f"audit problems {len(r['audit_problems'])}, images without a row {len(r['orphans'])}.",
        "",
        "Peak resident memory (MiB), first half → second half: "
        + ", ".join(
            f"{s} {m['first_half_max_mib'][s]:.0f} → {m['second_half_max_mib'][s]:.0f} "
            f"({m['ratio'][s]:.3f}×)"
            for s in m["ratio"]
        )
        + ".",
        "",
        "Verdict: "
        + ("passed." if result["passed"] else "FAILED: " + "; ".join(result["failures"])),
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intervals = result["intervals"]
    times = [i["t_s"] / 60 for i in intervals]
    figure, (latency, memory) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for kind in ALL_PROTOCOLS:
        latency.plot(times, [i["p99_ms"].get(kind) for i in intervals], label=kind)
    latency.set_ylabel("p99 latency (ms)")
    latency.set_yscale("log")
    latency.legend(fontsize="small", ncol=3)
    latency.set_title("soak: p99 per interval, and resident memory of each service")
    for service in ("rest", "grpc"):
        memory.plot(times, [i["rss_mib"].get(service) for i in intervals], label=service)
    memory.set_ylabel("resident memory (MiB)")
    memory.set_xlabel("minutes")
    memory.set_ylim(bottom=0)
    memory.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
