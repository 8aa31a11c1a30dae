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
    if ratios and max(ratios.values()) >= 10:
        return Verdict("holds", reasons)
    reasons.append(
        "Nowhere near ten times: the same image crosses the same loopback or link either way. "
        "Published tenfold gaps came from conditions this lab can reproduce: a REST client "
        "that opens a new connection per request across a long round trip (see the "
        "connections experiment), or JSON with base64 against protobuf."
    )
    return Verdict("does not hold", reasons)


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
    if overhead["grpc"] < overhead["rest"]:
        return Verdict("holds only when", ["it is about header bytes (HPACK compresses them); "
                                           "'much safer' is not measurable as a protocol "
                                           "property.", *reasons])  # fmt: skip
    return Verdict("does not hold", reasons)


def _overhead(wire: Data) -> int:
    up = wire["wire_bytes_up"] - wire["payload_bytes_up"]
    return int(up + wire["wire_bytes_down"] - wire["payload_bytes_down"])


def streaming(results: Data) -> Verdict:
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
    return Verdict("holds", reasons)


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
    reasons = [
        f"gRPC faster: {', '.join(faster) or 'nowhere'}.",
        f"gRPC slower: {', '.join(slower) or 'nowhere'}.",
        f"No difference that the 95 % interval can tell: {', '.join(same) or 'none'}.",
    ]
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
