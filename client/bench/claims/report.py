"""The claims report: claims.md (each claim, its verdict, its numbers) and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from client.bench.claims import CLAIMS
from client.bench.claims.codecs import STEP_NAMES
from client.bench.claims.factorial import CONCURRENCY
from client.bench.claims.verdicts import Verdict

Data = dict[str, Any]


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _interval(value: list[float] | None) -> str:
    if not value:
        return "–"
    middle, low, high = value
    return f"{middle:+.3f} ({low:+.3f} to {high:+.3f})"


def experiments(results: Data) -> list[str]:
    """The numbers, one table per experiment."""
    out = ["## The experiments", ""]
    forms = results["payload_forms"]["forms"]
    out += ["### Payload forms (echo, loopback, requests alternating)", ""]
    out += _table(
        ["form", "bytes up", "bytes down", "p50 ms", "minus REST raw, ms (95 %)"],
        [[name, f["sent_bytes"], f["received_bytes"], f["p50_ms"],
          _interval(f.get("minus_baseline_ms"))]
         for name, f in forms.items() if name != "errors"],
    )  # fmt: skip
    codec = results["codec_costs"]
    out += [f"### Creating and parsing, µs per request (a {codec['image_bytes']}-byte frame "
            f"with {codec['faces']} face(s); medians, in one process)", ""]  # fmt: skip
    out += _table(["form", *STEP_NAMES, "total"],
                  [[name, *(f.get(step, "–") for step in STEP_NAMES), f["total"]]
                   for name, f in codec["forms"].items()])  # fmt: skip
    out += ["REST's raw body needs no encoding and no decoding: the JPEG is the body. The "
            "frameworks' own work (reading the body, Starlette's multipart parser, grpc's "
            "framing) is not a codec's and is in the latencies above.", ""]  # fmt: skip
    out += ["### REST against unary gRPC", ""]
    rows = []
    for key, row in results["rest_against_grpc"].items():
        if isinstance(row, dict) and "rest" in row:
            rows.append([key, row["rest"]["p50_ms"], row["grpc"]["p50_ms"], row["rest_over_grpc"],
                         _interval(row["grpc"]["minus_baseline_ms"])])  # fmt: skip
        elif isinstance(row, dict) and "missing" in row:
            rows.append([key, "–", "–", "–", f"not measured: {row['missing']}"])
    out += _table(["where, model", "REST p50 ms", "gRPC p50 ms", "REST ÷ gRPC",
                   "gRPC minus REST, ms (95 %)"], rows)  # fmt: skip
    wire = results["header_bytes"]
    out += ["### Bytes on the wire per request (an 8-byte echo, veth counters)", ""]
    if "missing" in wire:
        out += [f"Not measured: {wire['missing']}", ""]
    else:
        out += _table(["protocol", "wire up", "payload up", "wire down", "payload down"],
                      [[p, w["wire_bytes_up"], w["payload_bytes_up"], w["wire_bytes_down"],
                        w["payload_bytes_down"]] for p, w in wire.items()])  # fmt: skip
    stream = results["streaming"]
    out += ["### Unary against one long-lived stream", ""]
    out += _table(["model", "stream minus unary, ms (95 %)"],
                  [[m, _interval(stream[f"{m} latency"]["grpc-stream"]["minus_baseline_ms"])]
                   for m in ("echo", "haar")])  # fmt: skip
    out += _table(["answers/s", *next(iter(stream["throughput"].values())).keys()],
                  [[k, *v.values()] for k, v in stream["throughput"].items()])  # fmt: skip
    out += factorial_section(results.get("factorial_design", {}))
    out += ["### Sizes and qualities (haar, requests alternating)", ""]
    for place, data in results["data_volume"].items():
        if "missing" in data:
            out += [f"{place}: not measured ({data['missing']})", ""]
            continue
        out += [f"{place}: {data['link']}", ""]
        out += _table(["size", "quality", "image bytes", "REST p50 ms", "gRPC p50 ms",
                       "gRPC minus REST, ms (95 %)"],
                      [[r["size"], r["quality"], r["image_bytes"], r["rest_p50_ms"],
                        r["grpc_p50_ms"], _interval(r["grpc_minus_rest_ms"])]
                       for r in data["rows"]])  # fmt: skip
    out += ["### Eight in flight: one HTTP/2 connection against eight (answers/s)", ""]
    for place, mux in results["multiplexing"].items():
        if "missing" in mux:
            out += [f"{place}: not measured ({mux['missing']})", ""]
            continue
        out += [f"{place}: {mux['link']}", ""]
        out += _table(["model", *mux["echo"].keys()],
                      [[m, *mux[m].values()] for m in ("echo", "haar")])  # fmt: skip
    out += ["### A new connection per request against one kept alive (echo)", ""]
    rows = []
    for key, v in results["connections"].items():
        if "missing" in v:
            rows.append([key, "–", "–", f"not measured: {v['missing']}", "–"])
        else:
            trips = v.get("round_trips")
            rows.append([key, v["kept alive"]["p50_ms"], v["new connection"]["p50_ms"],
                         _interval(v["new connection"]["minus_baseline_ms"]),
                         "–" if trips is None else f"{trips[0]:.2f} ({trips[1]:.2f} to "
                         f"{trips[2]:.2f})"])  # fmt: skip
    out += _table(["where, protocol", "kept alive p50 ms", "new connection p50 ms",
                   "the new connection's cost, ms (95 %)", "in round trips"], rows)  # fmt: skip
    idle = results.get("slow_start", {})
    out += _rows_across(
        "A camera at 30 frames per second against one at 1 (echo, across the round trip, "
        "one connection kept alive)", idle,
        f"net.ipv4.tcp_slow_start_after_idle = {idle.get('tcp_slow_start_after_idle')}; "
        f"{idle.get('image_bytes')} bytes a frame.",
        {"protocol, camera": "", "p50 ms": "p50_ms", "round trips": "round_trips",
         "requests": "requests"},
    )  # fmt: skip
    out += _rows_across(
        "Loss: eight in flight on one HTTP/2 connection against eight HTTP/1.1 connections "
        "(echo)", results.get("loss", {}), "",
        {"loss each way, connections": "", "p50 ms": "p50_ms", "p99 ms": "p99_ms",
         "answers/s": "per_second", "requests": "requests"},
    )  # fmt: skip
    return out


def factorial_section(design: Data) -> list[str]:
    """The factorial's tables: each cell, then each effect (client/bench/claims/
    factorial.py says how they are measured)."""
    out = ["### The factorial: HTTP version × encoding × mode, and grpcio (echo)", ""]
    if not design:
        return [*out, "Not measured in this run.", ""]
    out += ["REST cells: one FastAPI app on Granian (HTTP/1.1 and HTTP/2 on one port), one "
            "client library (httpx); WebSocket: websockets' client; grpcio: its own client "
            "and server. Concurrency 1: requests alternating between every cell, effects "
            "computed within each round, median and 95 % interval. Concurrency 8: windows "
            "alternating, a connection per thread in every cell; ratios of answers per "
            "second, median and range over rounds.", ""]  # fmt: skip
    for place in ("loopback", "delayed"):
        data = design.get(place, {})
        if "missing" in data or not data:
            out += [f"{place}: not measured ({data.get('missing', 'not run')})", ""]
            continue
        one, eight = data["concurrency 1"], data[f"concurrency {CONCURRENCY}"]
        trip = f"; measured round trip {data['rtt_ms']:.1f} ms" if data.get("rtt_ms") else ""
        out += [f"**{place}**: {data['link']}{trip}; {one['rounds']} rounds at concurrency "
                f"1, {eight['rounds']} at 8.", ""]  # fmt: skip
        rows = []
        for cell in design["cells"]:
            name = cell["cell"]
            c1, c8 = one["cells"].get(name, {}), eight["cells"].get(name, {})
            rows.append([name, cell["HTTP"], cell["encoding"], cell["mode"], cell["server"],
                         c1.get("p50_ms", "–"), c1.get("sent_bytes", "–"),
                         c1.get("received_bytes", "–"), c8.get("answers_per_s", "–"),
                         c8.get("p50_ms", "–")])  # fmt: skip
        out += _table(["cell", "HTTP", "encoding", "mode", "server", "p50 ms (c=1)",
                       "bytes up", "bytes down", "answers/s (c=8)", "p50 ms (c=8)"],
                      rows)  # fmt: skip
        out += _table(["effect (concurrency 1)", "ms per request (95 %)"],
                      [[k, _interval(v)] for k, v in one["effects_ms"].items()])  # fmt: skip
        out += _table(["ratio of answers/s (concurrency 8)", "median (range over rounds)"],
                      [[k, f"{v[0]:.3f} ({v[1]:.3f} to {v[2]:.3f})"]
                       for k, v in eight["answers_per_s_ratios"].items()])  # fmt: skip
        failed = {**one["errors"], **{f"{k} (c=8)": v for k, v in eight["errors"].items()}}
        if failed:
            out += [f"Errors: {failed}", ""]
    return out


def plot_factorial(results: Data, path: Path) -> None:
    """Each effect at concurrency 1 with its 95 % interval, a panel per place."""
    design = results.get("factorial_design", {})
    places = [p for p in ("loopback", "delayed") if "concurrency 1" in design.get(p, {})]
    figure, axes = plt.subplots(1, max(1, len(places)), figsize=(12, 5), squeeze=False)
    for ax, place in zip(axes[0], places, strict=False):
        effects = design[place]["concurrency 1"]["effects_ms"]
        names = list(effects)
        middles = [effects[n][0] for n in names]
        errors = [[effects[n][0] - effects[n][1] for n in names],
                  [effects[n][2] - effects[n][0] for n in names]]  # fmt: skip
        ax.barh(range(len(names)), middles, xerr=errors, capsize=3, color="tab:blue")
        ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [""] * len(names))
        ax.axvline(0, color="black", linewidth=0.8)
        ax.invert_yaxis()
        ax.set_xlabel("ms per echo request (median, 95 % interval)")
        ax.set_title(place)
        ax.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _rows_across(title: str, data: Data, note: str, columns: dict[str, str]) -> list[str]:
    """An experiment across the round trip: its heading, its link and measured round
    trip (and ``note``), and a row per entry; ``columns`` map headings to fields, the
    first to the entry's name."""
    out = [f"### {title}", ""]
    if "missing" in data:
        return [*out, f"Not measured: {data['missing']}", ""]
    if not data:
        return out
    out += [f"{data['link']}; measured round trip {data['rtt_ms']:.1f} ms. {note}".rstrip(), ""]
    fields = list(columns.values())[1:]
    rows = [
        [name, *(row[f] for f in fields)] for name, row in data.items() if isinstance(row, dict)
    ]
    return out + _table(list(columns), rows)


def markdown(results: Data, verdicts: dict[str, Verdict], conditions: list[str]) -> str:
    out = ["# The claims, tested", "", *conditions, ""]
    out += ["| claim | source | verdict |", "|---|---|---|"]
    for claim in CLAIMS:
        out.append(f"| “{claim.quote}” | {claim.source} | **{verdicts[claim.key].status}** |")
    out.append("")
    for claim in CLAIMS:
        verdict = verdicts[claim.key]
        out += [f"## “{claim.quote}”", "", f"Source: {claim.source}. Experiments: "
                + ", ".join(f"`{e}`" for e in claim.experiments) + ".", "",
                f"**Verdict: {verdict.status}**"
                + (f" {verdict.reasons[0]}" if verdict.status == "holds only when" else "."),
                ""]  # fmt: skip
        reasons = verdict.reasons[1:] if verdict.status == "holds only when" else verdict.reasons
        out += [f"- {reason}" for reason in reasons] + [""]
    out += experiments(results)
    return "\n".join(out)


def plot_sizes(results: Data, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (place, data) in zip(axes, results["data_volume"].items(), strict=False):
        if "rows" not in data:
            ax.set_title(f"{place}: not measured")
            continue
        rows = [r for r in data["rows"] if r["quality"] == 90]
        sizes = [r["image_bytes"] / 1024 for r in rows]
        ax.plot(sizes, [r["rest_p50_ms"] for r in rows], marker="o", label="REST")
        ax.plot(sizes, [r["grpc_p50_ms"] for r in rows], marker="o", label="gRPC")
        ax.set_xlabel("image (KiB, JPEG q90)")
        ax.set_ylabel("p50 ms (haar)")
        ax.set_title(place)
        ax.grid(True, alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
