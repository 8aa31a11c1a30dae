"""The experiments behind the claims. Each returns plain data (the report and the
verdicts read it), measured with facewire's own client against the stage's services.

Latency comparisons alternate requests between the things compared (``alternate``), so
each pair meets the same moment of the machine; throughput comparisons alternate
windows of the benchmark's load processes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import cv2

from client.bench.alternate import Alternated, alternate
from client.bench.claims import codecs, factorial
from client.bench.claims.loops import closed_loops
from client.bench.claims.stage import Place, Stage, wire_bytes
from client.bench.load import WindowSpec
from client.bench.runner import LoadPool
from client.engine import encode_frame
from client.sources import Image, SampleSource
from client.transports import ProtocolName, Transport
from client.transports.rest import RestTransport

Data = dict[str, Any]
FORMS: tuple[ProtocolName, ...] = ("rest", "rest-multipart", "rest-v2", "rest-v2-json",
                                   "grpc", "grpc-v2")  # fmt: skip
SIZES = ((320, 240), (640, 480), (1280, 720), (1920, 1080))
QUALITIES = (50, 90, 95)


@dataclass(frozen=True)
class Plan:
    """How many requests each comparison takes (``quick``: enough to run, for tests)."""

    echo_requests: int = 400
    haar_requests: int = 40
    shaped_requests: int = 10
    window_s: float = 2.0
    windows: int = 3
    frames: int = 6
    #: Requests a camera sends at 1 frame per second (the idle case of slow start).
    idle_requests: int = 10
    #: Seconds of load per protocol at each loss.
    loss_s: float = 8.0
    #: The factorial's rounds at concurrency 1: on loopback, and across the round trip.
    factorial_requests: int = 300
    factorial_shaped_requests: int = 60

    @classmethod
    def quick(cls) -> Plan:
        return cls(echo_requests=20, haar_requests=3, shaped_requests=2, window_s=0.5,
                   windows=1, frames=2, idle_requests=2, loss_s=1.0, factorial_requests=10,
                   factorial_shaped_requests=3)  # fmt: skip


def frames(plan: Plan, size: tuple[int, int] = (1280, 720), quality: int = 90) -> list[bytes]:
    """The sample clip's frames at ``size``, JPEG at ``quality``."""
    clip = SampleSource()
    images = [cast(Image, cv2.resize(clip.frame(n * 7), size, interpolation=cv2.INTER_AREA))
              for n in range(plan.frames)]  # fmt: skip
    return [encode_frame(n, image, quality).jpeg for n, image in enumerate(images)]


def _compare(
    place: Place, names: dict[str, ProtocolName], images: list[bytes], model: str,
    requests: int, *, new_connection: bool = False,
) -> Alternated:  # fmt: skip
    clients = {name: place.transport(protocol, new_connection=new_connection)
               for name, protocol in names.items()}  # fmt: skip
    try:
        return alternate(clients, images, model, requests)
    finally:
        for client in clients.values():
            client.close()


def _summary(taken: Alternated, baseline: str | None = None) -> Data:
    out: Data = {}
    for name in taken.times:
        row: Data = {
            "p50_ms": round(taken.p50(name), 3),
            "sent_bytes": round(statistics.fmean(taken.sent[name])),
            "received_bytes": round(statistics.fmean(taken.received[name])),
            "requests": len(taken.times[name]),
        }
        if baseline is not None and name != baseline:
            middle, low, high = taken.difference(name, baseline)
            row["minus_baseline_ms"] = [round(middle, 3), round(low, 3), round(high, 3)]
        out[name] = row
    out["errors"] = dict(taken.errors)
    return out


def payload_forms(stage: Stage, plan: Plan) -> Data:
    """Claim 1: every payload form, echo (no pipeline work), alternating; bytes each way
    and latency, against REST's raw body."""
    place = stage.places["loopback"]
    taken = _compare(place, {f: f for f in FORMS}, frames(plan), "echo", plan.echo_requests)
    return {"baseline": "rest", "forms": _summary(taken, "rest")}


def codec_costs(stage: Stage, plan: Plan) -> Data:
    """Claim 1's "efficient to create and parse": each form's request and answer built
    and read with the codecs client and services run, in this process (``codecs``); the
    answer is a real one, for a frame with faces."""
    image = frames(plan)[0]
    transport = stage.places["loopback"].transport("rest")
    try:
        result = transport.detect(image, model="haar", save=False, frame_id="frame-1").result
    finally:
        transport.close()
    return {"image_bytes": len(image), "faces": len(result.boxes),
            "forms": codecs.measure(image, result, plan.echo_requests)}  # fmt: skip


def rest_against_grpc(stage: Stage, plan: Plan) -> Data:
    """Claims 2 and 5: REST and unary gRPC, echo and haar, on loopback and (with root) a
    rate-limited link, alternating; the ratio REST ÷ gRPC of their medians."""
    out: Data = {}
    images = frames(plan)
    for place_name in ("loopback", "rate-limited"):
        if place_name not in stage.places:
            out[place_name] = {"missing": stage.missing.get(place_name, "not set up")}
            continue
        place = stage.places[place_name]
        shaped = place_name != "loopback"
        for model in ("echo", "haar"):
            count = plan.shaped_requests if shaped else (
                plan.echo_requests if model == "echo" else plan.haar_requests)  # fmt: skip
            taken = _compare(place, {"rest": "rest", "grpc": "grpc"}, images, model, count)
            row = _summary(taken, "rest")
            row["rest_over_grpc"] = round(taken.p50("rest") / taken.p50("grpc"), 3)
            out[f"{place_name} {model}"] = row
        out[f"{place_name} link"] = place.describe
    return out


def header_bytes(stage: Stage, plan: Plan) -> Data:
    """Claim 3: bytes on the wire per request (headers, framing, TCP/IP: the veth's own
    counters) for REST and unary gRPC with an 8-byte payload, on one kept-alive
    connection each; and what the payload itself was."""
    place = stage.places.get("veth")
    if place is None or place.network is None:
        return {"missing": stage.missing.get("veth", "not set up")}
    out: Data = {}
    tiny = b"\xff\xd8\xff\xe0tiny"
    clients: dict[str, Callable[[], Transport]] = {
        "rest": lambda: place.transport("rest"),
        "grpc": lambda: place.transport("grpc"),
    }
    if place.granian_url is not None:
        # HPACK alone: one app, one server (Granian), one client (httpx), two versions.
        url = place.granian_url
        clients |= {f"REST on Granian, {v}": (lambda v=v: RestTransport(
                        url, token="", http_version=factorial.VERSIONS[v]))  # type: ignore[misc]
                    for v in factorial.VERSIONS}  # fmt: skip
    for protocol, make in clients.items():
        transport = make()
        try:
            for _ in range(5):  # connection, HPACK's table: set up before counting
                transport.detect(tiny, model="echo", save=False, frame_id="")
            sent0, received0 = wire_bytes(place.network)
            count = max(20, plan.echo_requests // 4)
            payload = [0, 0]
            for i in range(count):
                reply = transport.detect(tiny, model="echo", save=False, frame_id=str(i % 10))
                payload[0] += reply.bytes_sent
                payload[1] += reply.bytes_received
            # Read at the same point of a request as the first reading: whatever ACK or
            # window update is still to come for the last request was still to come for
            # the one before the first, so the average per request is the steady state's.
            sent1, received1 = wire_bytes(place.network)
        finally:
            transport.close()
        out[protocol] = {
            "wire_bytes_up": round((sent1 - sent0) / count),
            "wire_bytes_down": round((received1 - received0) / count),
            "payload_bytes_up": round(payload[0] / count),
            "payload_bytes_down": round(payload[1] / count),
            "requests": count,
        }
    return out


def streaming(stage: Stage, plan: Plan) -> Data:
    """Claim 4: unary calls against one long-lived stream: latency at concurrency 1
    (alternating), and throughput at concurrency 1 and 4 (alternating windows)."""
    place = stage.places["loopback"]
    out: Data = {}
    images = frames(plan)
    for model in ("echo", "haar"):
        count = plan.echo_requests if model == "echo" else plan.haar_requests
        taken = _compare(place, {"grpc": "grpc", "grpc-stream": "grpc-stream"}, images, model,
                         count)  # fmt: skip
        out[f"{model} latency"] = _summary(taken, "grpc")
    out["throughput"] = _throughput(place, plan, ("rest", "grpc", "grpc-stream"), images)
    return out


def _throughput(
    place: Place, plan: Plan, protocols: tuple[ProtocolName, ...], images: list[bytes],
    new_connection: bool = False,
) -> Data:  # fmt: skip
    """Answers per second, echo and haar, at concurrency 1 and 4, windows alternating."""
    pool = LoadPool(1, images, place.rest_url, place.grpc_target, new_connection)
    out: Data = {}
    try:
        for model in ("echo", "haar"):
            for level in (1, 4):
                rates: dict[str, list[float]] = {p: [] for p in protocols}
                for k in range(plan.windows + 1):  # the first round warms up, uncounted
                    for protocol in protocols:
                        spec = WindowSpec(protocol=protocol, model=model, concurrency=level,
                                          rate=None, duration_s=plan.window_s, seed=k)  # fmt: skip
                        result = pool.run(spec)
                        if k:
                            rates[protocol].append(result.completed / result.elapsed_s)
                out[f"{model} concurrency {level}"] = {
                    p: round(statistics.median(r), 1) for p, r in rates.items()
                }
    finally:
        pool.close()
    return out


def data_volume(stage: Stage, plan: Plan) -> Data:
    """Claim 6: frames from 320×240 to 1920×1080 (JPEG q90), and 1280×720 at q50 and q95,
    REST against unary gRPC, haar, on loopback and the rate-limited link."""
    out: Data = {}
    variants = [(size, 90) for size in SIZES] + [((1280, 720), q) for q in QUALITIES if q != 90]
    for place_name in ("loopback", "rate-limited"):
        if place_name not in stage.places:
            out[place_name] = {"missing": stage.missing.get(place_name, "not set up")}
            continue
        place = stage.places[place_name]
        count = plan.haar_requests if place_name == "loopback" else plan.shaped_requests
        rows = []
        for (width, height), quality in variants:
            images = frames(plan, (width, height), quality)
            taken = _compare(place, {"rest": "rest", "grpc": "grpc"}, images, "haar", count)
            summary = _summary(taken, "rest")
            rows.append({
                "size": f"{width}×{height}", "quality": quality,
                "image_bytes": round(statistics.fmean(map(len, images))),
                "rest_p50_ms": summary["rest"]["p50_ms"],
                "grpc_p50_ms": summary["grpc"]["p50_ms"],
                "grpc_minus_rest_ms": summary["grpc"]["minus_baseline_ms"],
                "rest_bytes_up": summary["rest"]["sent_bytes"],
                "grpc_bytes_up": summary["grpc"]["sent_bytes"],
            })  # fmt: skip
        out[place_name] = {"link": place.describe, "rows": rows}
    return out


#: Experiments in the order make claims runs them.
ORDER = ("payload_forms", "codec_costs", "rest_against_grpc", "header_bytes", "streaming",
         "factorial_design", "data_volume", "multiplexing", "connections", "slow_start",
         "loss")  # fmt: skip


def factorial_design(stage: Stage, plan: Plan) -> Data:
    """HTTP version × encoding × mode, and grpcio (``factorial``): echo, on loopback and
    across the round trip, at concurrency 1 (requests alternating) and 8 (windows
    alternating)."""
    out: Data = {"cells": factorial.describe_cells()}
    images = frames(plan)
    for place_name in ("loopback", "delayed"):
        place = stage.places.get(place_name)
        if place is None or place.granian_url is None:
            out[place_name] = {"missing": stage.missing.get(place_name, "no Granian service")}
            continue
        count = plan.factorial_shaped_requests if place.rtt_ms else plan.factorial_requests
        out[place_name] = {
            "link": place.describe,
            "rtt_ms": place.rtt_ms,
            "concurrency 1": factorial.latency(place.granian_url, place.grpc_target, images,
                                               count),
            f"concurrency {factorial.CONCURRENCY}": factorial.throughput(
                place.granian_url, place.grpc_target, images, plan.windows, plan.window_s),
        }  # fmt: skip
    return out


#: Requests in flight in the multiplexing and loss experiments.
IN_FLIGHT = 8


def multiplexing(stage: Stage, plan: Plan) -> Data:
    """Eight requests in flight over one HTTP/2 connection (one gRPC channel shared by
    eight threads) against eight HTTP/1.1 connections (REST, one per thread) and eight
    gRPC channels; echo and haar, windows alternating; on loopback and across a round
    trip."""
    out: Data = {}
    for place_name in ("loopback", "delayed"):
        if place_name in stage.places:
            place = stage.places[place_name]
            out[place_name] = {"link": place.describe, **_multiplexed(place, plan)}
        else:
            out[place_name] = {"missing": stage.missing.get(place_name, "not set up")}
    return out


def _multiplexed(place: Place, plan: Plan) -> Data:
    images = frames(plan)
    out: Data = {}
    for model in ("echo", "haar"):
        rates: dict[str, list[float]] = {f"rest, {IN_FLIGHT} connections": [],
                                         f"grpc, {IN_FLIGHT} channels": [],
                                         "grpc, 1 shared channel": []}  # fmt: skip
        for k in range(plan.windows + 1):
            for name in rates:
                protocol: ProtocolName = "rest" if name.startswith("rest") else "grpc"
                if "shared" in name:
                    shared = place.transport(protocol)
                    clients = [shared] * IN_FLIGHT
                else:
                    clients = [place.transport(protocol) for _ in range(IN_FLIGHT)]
                try:
                    answered, seconds = _threads(clients, images, model, plan.window_s)
                finally:
                    for client in set(clients):
                        client.close()
                if k:
                    rates[name].append(answered / seconds)
        out[model] = {name: round(statistics.median(r), 1) for name, r in rates.items()}
    return out


def _threads(
    clients: list[Transport], images: list[bytes], model: str, seconds: float
) -> tuple[int, float]:
    """Each client in its own thread, closed loop, for ``seconds``: answers, and time."""
    taken = closed_loops(clients, images, model, seconds)
    return len(taken.latencies), taken.seconds


def connections(stage: Stage, plan: Plan) -> Data:
    """A new connection per request against one kept alive, REST and unary gRPC, with
    TLS off and on, on loopback and across a round trip; echo, alternating (the
    kept-alive client as the baseline). Across the round trip, the new connection's cost
    in round trips of the link (TCP's handshake is one, TLS 1.3's another)."""
    out: Data = {}
    images = frames(plan)
    for place_name in ("loopback", "loopback TLS", "delayed", "delayed TLS"):
        if place_name not in stage.places:
            out[place_name] = {"missing": stage.missing.get(place_name, "not set up")}
            continue
        place = stage.places[place_name]
        for protocol in ("rest", "grpc"):
            clients = {
                "kept alive": place.transport(protocol),
                "new connection": place.transport(protocol, new_connection=True),
            }
            try:
                count = (
                    plan.shaped_requests * 3 if place.rtt_ms else max(20, plan.echo_requests // 4)
                )
                taken = alternate(clients, images, "echo", count)
            finally:
                for client in clients.values():
                    client.close()
            row = _summary(taken, "kept alive")
            if place.rtt_ms:
                row["rtt_ms"] = round(place.rtt_ms, 2)
                cost = row["new connection"]["minus_baseline_ms"]
                row["round_trips"] = [round(v / place.rtt_ms, 2) for v in cost]
            out[f"{place_name} {protocol}"] = row
    return out


def slow_start(stage: Stage, plan: Plan) -> Data:
    """A camera at 30 frames per second against one at 1, across the round trip, each
    on one connection kept alive (REST and gRPC, echo, 1280×720): after an idle second
    Linux restarts TCP's congestion window (``net.ipv4.tcp_slow_start_after_idle``), so
    each frame pays the slow start again; at 30 fps the window stays open."""
    if "delayed" not in stage.places:
        return {"missing": stage.missing.get("delayed", "not set up")}
    place = stage.places["delayed"]
    images = frames(plan)
    out: Data = {"link": place.describe, "rtt_ms": place.rtt_ms,
                 "tcp_slow_start_after_idle": _sysctl("net/ipv4/tcp_slow_start_after_idle"),
                 "image_bytes": round(statistics.fmean(map(len, images)))}  # fmt: skip
    for protocol in ("rest", "grpc"):
        for fps, count in ((30.0, max(30, plan.idle_requests * 3)), (1.0, plan.idle_requests)):
            transport = place.transport(protocol)
            try:
                transport.detect(images[0], model="echo", save=False, frame_id="warm")
                times = _paced(transport, images, fps, count)
            finally:
                transport.close()
            p50 = statistics.median(times)
            out[f"{protocol} {fps:g} fps"] = {
                "p50_ms": round(p50, 2), "requests": count,
                "round_trips": round(p50 / place.rtt_ms, 2) if place.rtt_ms else None}  # fmt: skip
    return out


def _paced(transport: Transport, images: list[bytes], fps: float, count: int) -> list[float]:
    """``count`` requests, one every 1/``fps`` seconds (as a camera sends), the first one
    interval after the last request: latencies."""
    times = []
    start = time.perf_counter()
    for n in range(count):
        wait = start + (n + 1) / fps - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # a camera's frame interval: the point of the experiment
        reply = transport.detect(images[n % len(images)], model="echo", save=False, frame_id="")
        times.append(reply.latency_ms)
    return times


def _sysctl(name: str) -> str:
    try:
        return Path(f"/proc/sys/{name}").read_text().strip()
    except OSError:
        return "unknown"


def loss(stage: Stage, plan: Plan) -> Data:
    """Eight requests in flight across the round trip with 1 % and 3 % loss each way:
    one HTTP/2 connection (a gRPC channel shared by eight threads) against eight
    HTTP/1.1 connections (REST, one per thread); echo; p50, p99 and answers per second.
    A lost packet holds up everything behind it on its TCP connection: on one shared
    connection, every stream."""
    if "delayed" not in stage.places:
        return {"missing": stage.missing.get("delayed", "not set up")}
    place = stage.places["delayed"]
    network = place.network
    assert network is not None  # the delayed place is behind a link
    original = network.profile
    images = frames(plan)
    out: Data = {"link": place.describe, "rtt_ms": place.rtt_ms}
    try:
        for loss_pct in (1.0, 3.0):
            network.reshape(replace(original, loss_pct=loss_pct))
            pairs: tuple[tuple[str, ProtocolName, bool], ...] = (
                (f"rest, {IN_FLIGHT} connections", "rest", False),
                ("grpc, 1 shared channel", "grpc", True),
            )
            for name, protocol, shared in pairs:
                one = place.transport(protocol) if shared else None
                clients = [one or place.transport(protocol) for _ in range(IN_FLIGHT)]
                try:
                    taken = closed_loops(clients, images, "echo", plan.loss_s)
                    latencies, seconds = taken.latencies, taken.seconds
                finally:
                    for client in set(clients):
                        client.close()
                ordered = sorted(latencies)
                out[f"{loss_pct:g} % {name}"] = {
                    "p50_ms": round(statistics.median(ordered), 2),
                    "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
                    "per_second": round(len(ordered) / seconds, 1),
                    "requests": len(ordered),
                }
    finally:
        network.reshape(original)
    return out


def haar_against_echo(results: Data) -> Data:
    """Where the model's time hides the protocol: from rest_against_grpc's loopback rows,
    each protocol's share of a haar request that echo's time is."""
    echo, haar = results.get("loopback echo"), results.get("loopback haar")
    if not echo or not haar:
        return {"missing": "needs the loopback rows"}
    return {
        protocol: {"echo_p50_ms": echo[protocol]["p50_ms"], "haar_p50_ms": haar[protocol]["p50_ms"],
                   "protocol_share": round(echo[protocol]["p50_ms"] / haar[protocol]["p50_ms"], 4)}
        for protocol in ("rest", "grpc")
    }  # fmt: skip
