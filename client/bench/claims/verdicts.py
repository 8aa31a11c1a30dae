"""A verdict per claim, from its experiments' numbers: holds, does not hold, holds only
when, or not measured (and why). The rules are written out here so that a reader can
check a verdict against the numbers beside it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Data = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    status: str  # "holds", "does not hold", "holds only when", "not measured"
    reasons: list[str]


def _sign(interval: list[float]) -> int:
    """-1: clearly below 0 (its whole 95 % interval), 1: clearly above, 0: can't tell."""
    _, low, high = interval
    return -1 if high < 0 else 1 if low > 0 else 0


def _ms(interval: list[float]) -> str:
    middle, low, high = interval
    return f"{middle:+.3f} ms (95 %: {low:+.3f} to {high:+.3f})"


FORM_NAMES = {"rest": "REST raw body", "rest-multipart": "multipart",
              "rest-v2": "binary tensor data", "rest-v2-json": "JSON with base64",
              "grpc": "gRPC protobuf", "grpc-v2": "gRPC tensors"}  # fmt: skip


def binary(results: Data) -> Verdict:
    forms = results["payload_forms"]["forms"]
    grpc, json_form, raw = forms["grpc"], forms["rest-v2-json"], forms["rest"]
    reasons = [
        f"Bytes per request, client to service: REST raw body {raw['sent_bytes']}, "
        f"multipart {forms['rest-multipart']['sent_bytes']}, Open Inference Protocol JSON with "
        f"the image in base64 {json_form['sent_bytes']}, binary tensor data "
        f"{forms['rest-v2']['sent_bytes']}, gRPC protobuf {grpc['sent_bytes']}, gRPC tensors "
        f"{forms['grpc-v2']['sent_bytes']}.",
        f"Echo latency against REST's raw body: gRPC {_ms(grpc['minus_baseline_ms'])}, JSON "
        f"with base64 {_ms(json_form['minus_baseline_ms'])}.",
    ]
    costs = results["codec_costs"]["forms"]
    reasons.append(
        "Creating and parsing request and answer, client and server together, per request "
        f"({results['codec_costs']['image_bytes']} bytes): "
        + ", ".join(f"{FORM_NAMES[f]} {c['total']:g} µs" for f, c in costs.items())
        + "."
    )
    beats_json = (
        grpc["sent_bytes"] < 0.9 * json_form["sent_bytes"]
        and grpc["p50_ms"] < json_form["p50_ms"]
        and costs["grpc"]["total"] < costs["rest-v2-json"]["total"]
    )
    versus_raw = _sign(grpc["minus_baseline_ms"])
    if beats_json and versus_raw >= 0:
        reasons.append(
            "Protobuf beats JSON, whose base64 adds a third to the image's bytes and costs "
            "encoding and parsing; it does not beat a binary body over HTTP/1.1, which sends "
            "the same image bytes with no encoding at all"
            + (" and was faster" if versus_raw > 0 else " and was as fast")
            + "."
        )
        return Verdict("holds only when", ["compared with JSON (and base64) payloads.", *reasons])
    if beats_json and versus_raw < 0:
        return Verdict("holds", reasons)
    return Verdict("does not hold", reasons)


def ten_times(results: Data) -> Verdict:
    rows = {k: v for k, v in results["rest_against_grpc"].items() if isinstance(v, dict)
            and "rest_over_grpc" in v}  # fmt: skip
    ratios = {k: v["rest_over_grpc"] for k, v in rows.items()}
    reasons = ["REST p50 ÷ gRPC p50: " + ", ".join(f"{k} {r:g}" for k, r in ratios.items()) + "."]
    missing = [k for k, v in results["rest_against_grpc"].items() if isinstance(v, dict)
               and "missing" in v]  # fmt: skip
    if missing:
        reasons.append(f"Not measured: {', '.join(missing)} (needs root for a network namespace).")
    worst = _worst_case(results)
    if worst is not None:
        ratio, rtt = worst
        reasons.append(
            f"Across a {rtt:.0f} ms round trip, REST opening a new connection for every request "
            f"against gRPC on a kept-alive channel: {ratio:.2f} times (echo p50s)."
        )
        if ratio >= 10:
            return Verdict("holds only when", ["REST opens a new connection for every request "
                                               "across a long round trip.", *reasons])  # fmt: skip
    if ratios and max(ratios.values()) >= 10:
        return Verdict("holds", reasons)
    reasons.append(
        "Nowhere near ten times: the same image crosses the same loopback or link either way. "
        "Published tenfold gaps came from conditions this lab can reproduce: a REST client "
        "that opens a new connection per request across a long round trip (see the "
        "connections experiment), or JSON with base64 against protobuf."
    )
    return Verdict("does not hold", reasons)


def _worst_case(results: Data) -> tuple[float, float] | None:
    """REST with a new connection per request ÷ gRPC kept alive, across the round trip
    (the connections experiment), and that round trip; None where not measured."""
    rest, grpc = (results["connections"].get(f"delayed {p}", {}) for p in ("rest", "grpc"))
    if "new connection" not in rest or "kept alive" not in grpc:
        return None
    ratio = rest["new connection"]["p50_ms"] / grpc["kept alive"]["p50_ms"]
    return ratio, float(rest["rtt_ms"])


def headers(results: Data) -> Verdict:
    wire = results["header_bytes"]
    if "missing" in wire:
        why = f"Header bytes need the veth counters: {wire['missing']}."
        return Verdict("not measured", [why])
    overhead = {p: _overhead(w) for p, w in wire.items()}
    reasons = [
        f"Bytes on the wire per request beyond the payload (headers, framing, TCP/IP; both "
        f"ways; an 8-byte echo on a kept-alive connection): REST {overhead['rest']}, gRPC "
        f"{overhead['grpc']}.",
    ]
    tls = results["connections"]
    rest_tls = tls["loopback TLS rest"]["new connection"]["minus_baseline_ms"]
    grpc_tls = tls["loopback TLS grpc"]["new connection"]["minus_baseline_ms"]
    reasons.append(
        "Safety is TLS's, not HTTP/2's: both services speak TLS with the same certificate "
        "when configured. Its cost is the handshake, paid per connection: a new TLS "
        f"connection per request cost REST {_ms(rest_tls)} and gRPC {_ms(grpc_tls)} per "
        "echo request over keeping one."
    )
    far = [(p, tls.get(f"delayed TLS {p}", {})) for p in ("rest", "grpc")]
    if all("round_trips" in row for _, row in far):
        reasons.append(
            f"Across a {far[0][1]['rtt_ms']:.0f} ms round trip, a new TLS connection per request "
            "cost " + " and ".join(f"{p.upper() if p == 'rest' else 'gRPC'} "
                                   f"{row['round_trips'][0]:.1f} round trips"
                                   for p, row in far)
            + " (TCP's handshake is one, TLS 1.3's another; the rest is slow start on a new "
            "connection), against "
            + " and ".join(f"{row['round_trips'][0]:.1f}"
                           for _, row in (("rest", tls.get("delayed rest", {})),
                                          ("grpc", tls.get("delayed grpc", {})))
                           if "round_trips" in row)
            + " without TLS."
        )  # fmt: skip
    h1, h2 = (overhead.get(f"REST on Granian, {v}") for v in ("HTTP/1.1", "HTTP/2"))
    if h1 is not None and h2 is not None:
        # HPACK alone: the same app, server (Granian) and client (httpx); only the version.
        reasons.insert(0, (
            f"HPACK's own share: the same REST app on one server and one client, HTTP/2 "
            f"against HTTP/1.1, put {h2} bytes beyond the payload on the wire per request "
            f"against {h1}: {h1 - h2:+d} bytes saved by HTTP/2. The REST–gRPC difference "
            "below also holds the two APIs' own headers (HTTP/1.1's response headers, "
            "gRPC's trailers), so it is not HPACK's alone."))  # fmt: skip
        if h2 < h1:
            return Verdict("holds only when", ["it is about header bytes: HPACK saves "
                                               f"{h1 - h2} bytes a request, measured with the "
                                               "HTTP version the only difference; 'much safer'"
                                               " is not measurable as a protocol property.",
                                               *reasons])  # fmt: skip
        return Verdict("does not hold", reasons)
    if overhead["grpc"] < overhead["rest"]:
        return Verdict("holds only when", ["it is about header bytes (HPACK compresses them); "
                                           "'much safer' is not measurable as a protocol "
                                           "property.", *reasons])  # fmt: skip
    return Verdict("does not hold", reasons)


def _overhead(wire: Data) -> int:
    up = wire["wire_bytes_up"] - wire["payload_bytes_up"]
    return int(up + wire["wire_bytes_down"] - wire["payload_bytes_down"])


#: The factorial's stream contrasts (``factorial.CONTRASTS``).
REST_STREAM = "stream − unary, REST (WebSocket − HTTP/1.1 raw)"
GRPC_STREAM = "stream − unary, grpcio"


def _factorial_rows(results: Data, level: str) -> dict[str, Data]:
    """The factorial's results at ``level`` ("concurrency 1" or "concurrency 8"), by
    place, where measured."""
    design = results.get("factorial_design", {})
    return {place: design[place][level] for place in ("loopback", "delayed")
            if level in design.get(place, {})}  # fmt: skip


def streaming(results: Data) -> Verdict:
    """REST's half of the claim is decided by whether REST's stream (the WebSocket) ran;
    whether streaming helps, by the factorial's stream contrasts, place by place."""
    fallback = _grpc_streaming(results)
    rows = _factorial_rows(results, "concurrency 1")
    ran = bool(rows) and all(
        r["cells"].get("REST HTTP/1.1 WebSocket") and
        not any(k.startswith("REST HTTP/1.1 WebSocket") for k in r["errors"])
        for r in rows.values())  # fmt: skip
    if not ran:
        return fallback
    helped: list[str] = []
    not_helped: list[str] = []
    numbers: list[str] = []
    for place, row in rows.items():
        for stack, key in (("REST", REST_STREAM), ("gRPC", GRPC_STREAM)):
            effect = row["effects_ms"][key]
            (helped if _sign(effect) < 0 else not_helped).append(f"{stack} on {place}")
            numbers.append(f"{stack} on {place} {_ms(effect)}")
    eight = _factorial_rows(results, "concurrency 8")
    ratios = [f"{place}: REST ×{r['answers_per_s_ratios'][k][0]:.2f}, gRPC "
              f"×{r['answers_per_s_ratios'][g][0]:.2f}" for place, r in eight.items()
              for k, g in [("stream ÷ unary, REST", "stream ÷ unary, grpcio")]
              if k in r["answers_per_s_ratios"] and g in r["answers_per_s_ratios"]]  # fmt: skip
    reasons = [
        "REST streams too: facewire's REST service answers frames in order over one "
        "WebSocket (/v1/stream), with the limits, auth, metrics and saving of its other "
        "paths, and the factorial measured it beside gRPC's stream with no errors.",
        "A stream against a request per frame, each on its own stack (echo, concurrency "
        f"1, per request): {'; '.join(numbers)}.",
        f"A stream was faster where the whole 95 % interval is below zero: "
        f"{', '.join(helped) or 'nowhere'}; not where: {', '.join(not_helped) or 'nowhere'}.",
    ]
    if ratios:
        reasons.append("Answers per second, stream ÷ unary at concurrency 8: "
                       + "; ".join(ratios) + ".")  # fmt: skip
    return Verdict("does not hold", [*reasons, *fallback.reasons[:1]])


def _grpc_streaming(results: Data) -> Verdict:
    """The verdict from gRPC's stream alone (where the factorial did not run)."""
    data = results["streaming"]
    echo = data["echo latency"]["grpc-stream"]["minus_baseline_ms"]
    haar = data["haar latency"]["grpc-stream"]["minus_baseline_ms"]
    throughput = data["throughput"]
    four = throughput["echo concurrency 4"]
    reasons = [
        f"One long-lived stream against unary calls: echo {_ms(echo)}, haar {_ms(haar)} per "
        f"request; echo at concurrency 4: stream {four['grpc-stream']}/s, unary "
        f"{four['grpc']}/s, REST {four['rest']}/s.",
        "REST over HTTP/1.1 is request and response; facewire's REST service offers no "
        "WebSocket or server-sent events, which would be REST's own ways to stream.",
    ]
    if _sign(echo) <= 0 and four["grpc-stream"] >= four["grpc"]:
        return Verdict("holds", [*reasons, "The stream answered echo no later than unary calls "
                                 "and carried at least as many answers per second."])  # fmt: skip
    return Verdict("holds only when", [
        "it is about what gRPC can do: a bidirectional stream exists, but here it was not "
        "faster than unary calls (see below).", *reasons])  # fmt: skip


def latency(results: Data) -> Verdict:
    faster: list[str] = []
    slower: list[str] = []
    same: list[str] = []
    for key, row in results["rest_against_grpc"].items():
        if isinstance(row, dict) and "grpc" in row:
            sign = _sign(row["grpc"]["minus_baseline_ms"])
            (faster if sign < 0 else slower if sign > 0 else same).append(key)
    for place, data in results["data_volume"].items():
        for row in data.get("rows", []):
            name = f"{place} {row['size']} q{row['quality']}"
            sign = _sign(row["grpc_minus_rest_ms"])
            (faster if sign < 0 else slower if sign > 0 else same).append(name)
    _round_trip_rows(results, faster, slower, same)
    reasons = [
        f"gRPC faster: {', '.join(faster) or 'nowhere'}.",
        f"gRPC slower: {', '.join(slower) or 'nowhere'}.",
        f"No difference that the 95 % interval can tell: {', '.join(same) or 'none'}.",
    ]
    for place, row in _factorial_rows(results, "concurrency 1").items():
        effects = row["effects_ms"]
        parts = {"HTTP/2 (raw body)": "HTTP/2 − HTTP/1.1, raw",
                 "protobuf (over HTTP/2)": "protobuf − raw, HTTP/2",
                 "the implementation (grpcio's stack)":
                     "implementation: grpcio − REST HTTP/2 protobuf"}  # fmt: skip
        reasons.append(
            f"Separated on {place} (echo, concurrency 1; the factorial): gRPC minus REST "
            f"over HTTP/1.1 with a raw body, on one server, is "
            f"{_ms(effects['bundle: grpcio − REST HTTP/1.1 raw'])}; of it, "
            + ", ".join(f"{name} {_ms(effects[key])}" for name, key in parts.items())
            + ". A negative share made gRPC faster.")  # fmt: skip
    share = results.get("haar_against_echo", {})
    if "rest" in share:
        rest, grpc = share["rest"]["protocol_share"], share["grpc"]["protocol_share"]
        reasons.append(
            f"With a face to find, the protocol's whole cost (echo) is {rest:.1%} of a REST "
            f"request and {grpc:.1%} of a gRPC one."
        )
    # "Usually": in most conditions. Each comparison's 95 % interval misses its true
    # difference one time in twenty, on either side, so a few "faster" among many are
    # what chance gives even where there is no difference at all.
    compared = len(faster) + len(slower) + len(same)
    by_chance = math.ceil(compared * 0.025)
    if len(faster) > compared / 2:
        return Verdict("holds", reasons)
    if len(faster) > by_chance:
        return Verdict("holds only when", ["the conditions listed as faster below apply.",
                                           *reasons])  # fmt: skip
    reasons.append(
        f"gRPC was faster in {len(faster)} and slower in {len(slower)} of {compared} "
        f"comparisons. With 95 % intervals, chance alone puts 2.5 % of comparisons on "
        f"each side ({compared * 0.025:.1f} of {compared}), so up to {by_chance} faster "
        "is no sign of a consistent difference."
    )
    return Verdict("does not hold", reasons)


#: Comparisons without an interval (throughput, p99 under loss, slow start): a
#: difference smaller than this fraction is called no difference.
MARGIN = 0.1


def _round_trip_rows(results: Data, faster: list[str], slower: list[str], same: list[str]) -> None:
    """The experiments across the round trip, each put with faster, slower or the same
    (gRPC against REST, by MARGIN): eight in flight (answers per second, gRPC's one
    shared channel against REST's eight connections), loss (p99, the same pair), and a
    camera at 1 frame per second (p50: slow start after idle)."""

    def put(name: str, grpc: float, rest: float, lower_is_better: bool) -> None:
        better = grpc < rest if lower_is_better else grpc > rest
        if abs(grpc - rest) <= MARGIN * max(grpc, rest):
            same.append(name)
        else:
            (faster if better else slower).append(name)

    mux = results["multiplexing"].get("delayed", {})
    for model in ("echo", "haar"):
        if model in mux:
            row = mux[model]
            rest = next(v for k, v in row.items() if k.startswith("rest"))
            put(f"delayed {model} eight in flight", row["grpc, 1 shared channel"], rest, False)
    lossy = results.get("loss", {})
    for key, row in lossy.items():
        if key.endswith("grpc, 1 shared channel"):
            percent = key.split(" %")[0]
            rest = next(v for k, v in lossy.items() if k.startswith(f"{percent} % rest"))
            put(f"delayed {percent} % loss p99", row["p99_ms"], rest["p99_ms"], True)
    idle = results.get("slow_start", {})
    if "grpc 1 fps" in idle:
        put("delayed camera at 1 fps", idle["grpc 1 fps"]["p50_ms"], idle["rest 1 fps"]["p50_ms"],
            True)  # fmt: skip


def volume(results: Data) -> Verdict:
    reasons = []
    verdict = "does not hold"
    for place, data in results["data_volume"].items():
        if "missing" in data:
            reasons.append(f"{place}: not measured ({data['missing']}).")
            continue
        biggest = max(data["rows"], key=lambda r: r["image_bytes"])
        reasons.append(
            f"{place} ({data['link']}): at {biggest['size']} q{biggest['quality']} "
            f"({biggest['image_bytes']} bytes) REST sends {biggest['rest_bytes_up']} bytes and "
            f"gRPC {biggest['grpc_bytes_up']}; gRPC − REST {_ms(biggest['grpc_minus_rest_ms'])}."
        )
        if _sign(biggest["grpc_minus_rest_ms"]) < 0:
            verdict = "holds only when"
    reasons.append(
        "Both carry the JPEG as binary (REST as the raw body), so a larger image costs both "
        "the same bytes; neither compresses a JPEG further. What differs is a few dozen bytes "
        "of framing per request."
    )
    return Verdict(verdict, reasons)


RULES = {"binary": binary, "ten-times": ten_times, "headers": headers,
         "streaming": streaming, "latency": latency, "volume": volume}  # fmt: skip
