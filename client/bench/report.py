"""Outputs of a run, all rebuilt from its JSON: CSV, PNG plots and report.md."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from client.network import linkcheck
from client.render import COLORS

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_MD = "report.md"
Row = dict[str, Any]

CSV_COLUMNS = (
    "model", "mode", "level", "protocol", "stable", "windows", "throughput",
    "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "sd_ms",
    "service_p50_ms", "service_p99_ms", "overhead_p50_ms", "errors", "error_kinds",
    "late", "dropped", "bytes_sent", "bytes_received",
    "client_encode_ms", "client_send_wait_ms", "client_parse_ms",
    "server_queue_ms", "server_decode_ms", "server_preprocess_ms", "server_detect_ms",
    "server_save_ms", "server_total_ms", "transport_ms",
    "client_cpu", "processes", "client_bound", "efficiency", "floor_overhead_ms",
    "ratio_baseline", "ratio_throughput", "ratio_p50",
)  # fmt: skip
STACK: tuple[tuple[str, Callable[[Row], float]], ...] = (  # where the time goes, in order
    ("client encode", lambda r: r["client_ms"]["encode"]),
    ("transport", lambda r: r["transport_ms"]),
    ("server queue", lambda r: r["server_ms"]["queue"]),
    ("decode", lambda r: r["server_ms"]["decode"]),
    ("preprocess", lambda r: r["server_ms"]["preprocess"]),
    ("detect", lambda r: r["server_ms"]["detect"]),
    ("save", lambda r: r["server_ms"]["save"]),
    ("client parse", lambda r: r["client_ms"]["parse"]),
)


def _get(row: Row, group: str, key: str) -> Any:
    value = row.get(group)
    return value.get(key) if isinstance(value, dict) else None


def csv_row(row: Row) -> dict[str, Any]:
    flat = {
        "model": row["model"], "mode": row["mode"], "level": row["level"],
        "protocol": row["protocol"], "stable": row["stable"], "windows": row["windows"],
        "throughput": row["throughput"],
        **{f"{q}_ms": _get(row, "latency_ms", q)
           for q in ("p50", "p90", "p95", "p99", "max", "mean", "sd")},
        "service_p50_ms": _get(row, "service_ms", "p50"),
        "service_p99_ms": _get(row, "service_ms", "p99"),
        "overhead_p50_ms": _get(row, "overhead_ms", "p50"),
        "errors": row["error_count"],
        "error_kinds": ";".join(f"{k}={v}" for k, v in sorted(row["errors"].items())),
        "late": row["late"], "dropped": row["dropped"],
        "bytes_sent": row["bytes_sent"], "bytes_received": row["bytes_received"],
        "client_encode_ms": row["client_ms"]["encode"],
        "client_send_wait_ms": row["client_ms"]["send_wait"],
        "client_parse_ms": row["client_ms"]["parse"],
        **{f"server_{s}_ms": row["server_ms"][s]
           for s in ("queue", "decode", "preprocess", "detect", "save", "total")},
        "transport_ms": row["transport_ms"], "client_cpu": row["client_cpu"],
        "processes": row["processes"], "client_bound": row["client_bound"],
        "efficiency": row.get("efficiency"), "floor_overhead_ms": row.get("floor_overhead_ms"),
        "ratio_baseline": row["ratio_baseline"], "ratio_throughput": row["ratio_throughput"],
        "ratio_p50": row["ratio_p50"],
    }  # fmt: skip
    return {k: ("" if v is None else v) for k, v in flat.items()}


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in rows)


def _models(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _protocols(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r["protocol"] for r in rows))


def _level_name(run: Row) -> str:
    return "rate (requests/s)" if run["config"]["mode"] == "open" else "concurrency"


def _model_rows(run: Row, model: str) -> list[Row]:
    return [r for r in run["points"] if r["model"] == model]


def _first_level(run: Row, model: str) -> tuple[float, list[Row]]:
    """The lightest load of a model's sweep, and its rows (one per protocol)."""
    rows = _model_rows(run, model)
    first = min(r["level"] for r in rows)
    return first, [r for r in rows if r["level"] == first]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cdf(run: Row, model: str, path: Path) -> None:
    first, rows = _first_level(run, model)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in rows:
        if r["cdf"]:
            xs = [ms for _, ms in r["cdf"]]
            ys = [q for q, _ in r["cdf"]]
            ax.plot(xs, ys, marker=".", label=r["protocol"], color=_rgb(r["protocol"]))
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (ms, log scale)")
    ax.set_ylabel("percentile")
    ax.set_title(f"Latency CDF: model {model}, {_level_name(run)} {first:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_sweep(run: Row, model: str, path: Path) -> None:
    rows = _model_rows(run, model)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for protocol in _protocols(rows):
        mine = sorted((r for r in rows if r["protocol"] == protocol), key=lambda r: r["level"])
        levels = [r["level"] for r in mine]
        left.plot(levels, [r["throughput"] for r in mine], marker="o", label=protocol,
                  color=_rgb(protocol))  # fmt: skip
        p95 = [_get(r, "latency_ms", "p95") or float("nan") for r in mine]
        right.plot(levels, p95, marker="o", label=protocol, color=_rgb(protocol))
    left.set_title(f"Throughput: model {model}")
    left.set_ylabel("answers per second")
    right.set_title(f"p95 latency: model {model}")
    right.set_ylabel("ms")
    for ax in (left, right):
        ax.set_xlabel(_level_name(run))
        ax.grid(True, alpha=0.3)
        ax.legend()
    _save(fig, path)


def plot_breakdown(run: Row, model: str, path: Path) -> None:
    first, rows = _first_level(run, model)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.7 * len(rows)))
    colours = plt.get_cmap("tab10")
    for i, r in enumerate(rows):
        left = 0.0
        for j, (name, part) in enumerate(STACK):
            width = float(part(r) or 0.0)
            ax.barh(i, width, left=left, color=colours(j % 10), label=name if i == 0 else None)
            left += width
    ax.set_yticks(range(len(rows)), [r["protocol"] for r in rows])
    ax.set_xlabel("mean milliseconds per request")
    ax.set_title(f"Where the time goes: model {model}, {_level_name(run)} {first:g}")
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    _save(fig, path)


def _rgb(protocol: str) -> tuple[float, float, float]:
    b, g, r = COLORS.get(protocol, (128, 128, 128))
    return (r / 255, g / 255, b / 255)


_PLOTS = (("cdf", plot_cdf), ("sweep", plot_sweep), ("breakdown", plot_breakdown))


def plots(run: Row, out: Path) -> list[Path]:
    made = []
    for model in _models(run["points"]):
        for kind, draw in _PLOTS:
            path = out / f"{kind}_{model}.png"
            draw(run, model, path)
            made.append(path)
    return made


def report(run: Row) -> str:
    """report.md from a run's results.json, the plots named as ``plots`` names them
    (docs/benchmark.md quotes the committed run's)."""
    names = [Path(f"{kind}_{model}.png") for model in _models(run["points"]) for kind, _ in _PLOTS]
    return markdown(run, names if run["points"] else [])


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def conclusions(run: Row) -> list[str]:
    """Plain sentences with their numbers, for the top of the report."""
    lines = []
    for model in _models(run["points"]):
        rows = _model_rows(run, model)
        low, high = min(r["level"] for r in rows), max(r["level"] for r in rows)
        at_low = {r["protocol"]: r for r in rows if r["level"] == low and r["latency_ms"]}
        if at_low:
            fastest = min(at_low.values(), key=lambda r: r["latency_ms"]["p50"])
            parts = ", ".join(
                f"{p} {r['latency_ms']['p50']:.2f} ms (overhead p50 "
                f"{_fmt(_get(r, 'overhead_ms', 'p50'))} ms)"
                for p, r in at_low.items()
            )
            lines.append(
                f"**{model}**, {_level_name(run)} {low:g}: median end-to-end latency is "
                f"{parts}. Fastest: **{fastest['protocol']}**"
                + ("." if all(r["stable"] for r in at_low.values()) else " (not all stable).")
            )
        at_high = {r["protocol"]: r for r in rows if r["level"] == high}
        parts = ", ".join(
            f"{p} {r['throughput']:.1f}/s"
            + (f" (efficiency {r['efficiency']:.2f})" if r.get("efficiency") is not None else "")
            for p, r in at_high.items()
        )
        lines.append(f"**{model}**, {_level_name(run)} {high:g}: throughput {parts}.")
    unstable = [r for r in run["points"] if not r["stable"]]
    if unstable:
        names = ", ".join(f"{r['model']}/{r['level']:g}/{r['protocol']}" for r in unstable)
        lines.append(f"Unstable points (reported as measured, not averaged away): {names}.")
    bound = [r for r in run["points"] if r["client_bound"]]
    if bound:
        names = ", ".join(f"{r['model']}/{r['level']:g}/{r['protocol']}" for r in bound)
        lines.append(f"The load generator, not the server, was the bottleneck at: {names}.")
    late = [r for r in run["points"] if r["late"] or r["dropped"]]
    if late:
        names = ", ".join(
            f"{r['model']}/{r['level']:g}/{r['protocol']}: {r['late']} late, {r['dropped']} dropped"
            for r in late
        )
        lines.append(f"Sends that went out late or were dropped at the in-flight cap: {names}.")
    errors = [r for r in run["points"] if r["error_count"]]
    if errors:
        names = ", ".join(
            f"{r['model']}/{r['level']:g}/{r['protocol']}: {r['error_count']} "
            f"({', '.join(f'{k} {v}' for k, v in r['errors'].items())})"
            for r in errors
        )
        lines.append(f"Errors: {names}.")
    return lines


def conditions(run: Row) -> list[str]:
    """The conditions every number below depends on, first: the network between client
    and services (and whether it did what its profile says), connection reuse, and the
    load generators."""
    network = run.get("network") or {"description": "loopback: no shaping"}
    lines = [f"- **Network:** {network['description']}."]
    link = run.get("link")
    if link:
        engine = link["engine"]
        shaping = "; ".join([*engine.get("tc", []), *filter(None, [engine.get("wirefilter")])])
        lines.append(f"- **Link engine:** {engine['engine']} ({shaping or 'nothing shaped'}); "
                     f"{link['limits']['description']}.")  # fmt: skip
        check = linkcheck.LinkCheck.from_dict(link["check"])
        lines.append(f"- **Link check:** {check.describe()}.")
    lines.append(
        f"- **Connections:** {run.get('connections', 'kept alive (one per client thread)')}."
    )
    generators = run["config"].get("generators", ["python"])
    names = {"python": "facewire's Python client (load processes)", "h2load": "h2load (nghttp2)"}
    if run["config"].get("scheduler"):
        names["python"] = (f"facewire's Python client on the workers of the Dask scheduler "
                           f"{run['config']['scheduler']}")  # fmt: skip
    lines.append("- **Load generator:** " + ", then ".join(names[g] for g in generators) + ".")
    return lines


def generator_rows(run: Row) -> list[str]:
    """h2load beside the Python generator: the difference in latency is what the Python
    client costs per request; each generator's CPU per request."""
    h2load = {(r["model"], r["level"], r["protocol"].removesuffix(" (h2load)")): r
              for r in run["points"] if r.get("generator") == "h2load"}  # fmt: skip
    if not h2load:
        return []
    out = ["## The Python client against h2load", "",
           "| model | level | protocol | Python p50 ms | h2load p50 ms | the Python client's "
           "own cost, ms | Python answers/s | h2load answers/s | generator CPU ms per "
           "request: Python / h2load |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in run["points"]:
        key = (r["model"], r["level"], r["protocol"])
        other = h2load.get(key)
        if r.get("generator", "python") != "python" or other is None:
            continue
        mine, theirs = r["latency_ms"] or {}, other["latency_ms"] or {}
        cost = (mine["p50"] - theirs["p50"]) if mine and theirs else None
        out.append(
            f"| {r['model']} | {r['level']:g} | {r['protocol']} | {_fmt(mine.get('p50'))} | "
            f"{_fmt(theirs.get('p50'))} | {_fmt(cost)} | {r['throughput']:.1f} | "
            f"{other['throughput']:.1f} | {_fmt(_cpu_ms(r))} / {_fmt(_cpu_ms(other))} |"
        )
    note = ("h2load posts one frame per window (its body is one file): a point's windows go "
            "through the frames in turn. Its answers are checked against the services' own "
            "counters, since it counts a refused gRPC call (HTTP 200) as a success.")  # fmt: skip
    out += ["", note, ""]
    return out


def _cpu_ms(row: Row) -> float | None:
    throughput = row["throughput"]
    return 1000 * row["client_cpu"] / throughput if throughput else None


def markdown(run: Row, images: Sequence[Path]) -> str:
    cfg, machine = run["config"], run["machine"]
    out = [
        "# facewire benchmark report",
        "",
        f"Run {run['created']} on {machine['cpu']} ({machine['cores']} cores), {machine['os']}, "
        f"Python {machine['python']}.",
        "",
        *conditions(run),
        "",
        "## Conclusion",
        "",
        *[f"- {line}" for line in conclusions(run)],
        "",
    ]
    for model in _models(run["points"]):
        rows = _model_rows(run, model)
        out += [
            f"## Model `{model}`",
            "",
            f"| {_level_name(run)} | protocol | answers/s | p50 ms | p95 ms | p99 ms | max ms | "
            "overhead p50 ms | vs floor ms | ratio p50 | ratio answers/s | stable | errors | "
            "late | dropped | efficiency | load processes, CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(rows, key=lambda r: (r["level"], r["protocol"])):
            lat = r["latency_ms"] or {}
            out.append(
                f"| {r['level']:g} | {r['protocol']} | {r['throughput']:.1f} | "
                f"{_fmt(lat.get('p50'))} | {_fmt(lat.get('p95'))} | {_fmt(lat.get('p99'))} | "
                f"{_fmt(lat.get('max'))} | {_fmt(_get(r, 'overhead_ms', 'p50'))} | "
                f"{_fmt(r.get('floor_overhead_ms'))} | "
                f"{_fmt(r['ratio_p50'])} | {_fmt(r['ratio_throughput'])} | "
                f"{_fmt(r['stable'])} | {r['error_count']} | {r['late']} | {r['dropped']} | "
                f"{_fmt(r.get('efficiency'))} | "
                f"{r['processes']}, {r['client_cpu']:.2f}"
                + (" (bound)" if r["client_bound"] else "")
                + " |"
            )
        out.append("")
        for image in images:
            if image.stem.endswith(f"_{model}"):
                out += [f"![{image.stem}]({image.name})", ""]
    out += generator_rows(run)
    if run.get("floor"):
        out += ["## Floor: the same pipeline with no protocol", "",
                "| model | one core p50 ms | one core mean ms | lone request p50 ms | "
                "all cores /s | ideal /s |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for model, f in run["floor"].items():
            out.append(
                f"| {model} | {f['single_thread_p50_ms']:.2f} | {f['single_thread_mean_ms']:.2f} | "
                f"{_fmt(f.get('lone_request_p50_ms'))} | {f['all_cores_throughput']:.1f} | "
                f"{f['limit_throughput']:.1f} |"
            )
        out += ["",
                "One core: one thread, OpenCV's own threads off (the basis of efficiency). "
                "Lone request: one caller, its detection shared with idle cores. All cores: "
                "one pipeline thread per core. Ideal: cores ÷ one-core mean time."]  # fmt: skip
        out.append("")
    frames = run["frames"]
    levels = ", ".join(f"{x:g}" for x in (cfg["rates"] or cfg["concurrency"]))
    open_loop = cfg["mode"] == "open"
    arrivals = (
        f"; {cfg['arrivals']} arrivals, at most {cfg['max_inflight']} in flight"
        if open_loop
        else ""
    )
    window = cfg["window_requests"] or f"{cfg['window_s']} s"
    baseline = run["points"][0]["ratio_baseline"] if run["points"] else "-"
    size = f"{frames['width']}×{frames['height']}"
    out += [
        "## How this was measured",
        "",
        f"- Frames: {frames['count']} from `{frames['source']}`, {size}, "
        f"JPEG q{frames['jpeg_quality']}, {frames['mean_bytes']:.0f} bytes on average, "
        f"encoded once before the run ({frames['encode_ms']:.2f} ms each). "
        "Every protocol sent the same bytes in the same order.",
        f"- Load: {cfg['mode']} loop; levels {levels}{arrivals}. Open-loop latency counts "
        "from each request's intended send time (no coordinated omission); service time "
        "counts from the actual send.",
        f"- Windows of {window}, protocols alternating window by window; a point is stable "
        f"when its last {cfg['stable_windows']} windows agree within "
        f"±{cfg['tolerance'] * 100:.0f} % on throughput and p95 (at most "
        f"{cfg['max_windows']} windows). Ratios are medians over back-to-back window pairs "
        f"against `{baseline}`.",
        "- Overhead: end-to-end minus the server's own time (its queue wait plus its pipeline "
        "total), so it is what the protocol and the frameworks cost. Vs floor: end-to-end p50 "
        "minus the lone in-process request's p50. Efficiency: throughput ÷ "
        "(cores ÷ single-thread in-process time per frame); not given for `echo`, which does "
        "no pipeline work.",
        "- Load processes, CPU: how many processes generated the load, and the cores they "
        "used together; `bound` marks a point where the generator, not the server, was the "
        "bottleneck.",
        "- Everything ran on one machine over loopback; the load generator shares the CPU with "
        "the services, and its own CPU use is in the CSV (`client_cpu`, `client_bound`).",
        "",
        "Reproduce: `" + run["command"] + "`; rebuild this report: "
        "`python -m client.bench report DIR`.",
        "",
        "Package versions: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()) + ".",
        "",
    ]
    return "\n".join(out)


def write_all(run: Row, out: Path) -> None:
    """JSON (the source of truth), CSV, plots and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(run, indent=1) + "\n")
    rebuild(out)


def rebuild(out: Path) -> Row:
    run: Row = json.loads((out / RESULTS_JSON).read_text())
    write_csv(run["points"], out / RESULTS_CSV)
    if run["points"]:
        plots(run, out)
    (out / REPORT_MD).write_text(report(run))
    return run


def print_table(run: Row, console: Console | None = None) -> None:
    table = Table(title="facewire benchmark (ms unless noted)")
    for column in ("model", "level", "protocol", "answers/s", "p50", "p95", "p99",
                   "overhead p50", "vs floor", "ratio p50", "stable", "errors", "late",
                   "dropped", "procs", "cpu"):  # fmt: skip
        table.add_column(column, justify="left" if column in {"model", "protocol"} else "right")
    for r in run["points"]:
        lat = r["latency_ms"] or {}
        bound = " [red]bound[/red]" if r["client_bound"] else ""
        table.add_row(
            r["model"], f"{r['level']:g}", r["protocol"], f"{r['throughput']:.1f}",
            _fmt(lat.get("p50")), _fmt(lat.get("p95")), _fmt(lat.get("p99")),
            _fmt(_get(r, "overhead_ms", "p50")), _fmt(r.get("floor_overhead_ms")),
            _fmt(r["ratio_p50"]), "yes" if r["stable"] else "[red]NO[/red]",
            str(r["error_count"]), str(r["late"]), str(r["dropped"]),
            str(r["processes"]), f"{r['client_cpu']:.2f}{bound}",
        )  # fmt: skip
    (console or Console()).print(table)
