"""gRPC's HTTP/2 windows across a round trip: the service's stream window against
grpc's own flow control (BDP probing), for an ordinary frame and a 1 MB one, unary and
stream, at several round trips.

    python -m client.bench.windows [--rtt-ms 0,50,150] [--calls 15] [--out DIR]
    python -m client.bench.windows report DIR     # the table again, from its JSON

One link (wirefilter, or netem where the kernel has it; root), its round trip changed
in place; the gRPC service started once per window setting
(``FACEWIRE_GRPC_STREAM_WINDOW_BYTES``), inside the link's namespace. Each cell is the
median of ``--calls`` echo calls at concurrency 1 on a warm channel, and what it adds
over the same setting at 0 ms, in round trips. The settings are kept when they cost no
more than half a round trip over grpc's own at 50 ms (issue: "gRPC's windows, decided
by numbers").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from client.bench import FACE, machine
from client.network import linkcheck
from client.network.namespace import ENGINES, NetworkError, ServiceNetwork, preflight
from client.network.profiles import Profile, ProfileError
from client.processes import Child
from client.readiness import answers
from client.transports import make_transport
from facewire.settings import Settings

RESULTS_JSON, REPORT_MD = "windows.json", "windows.md"
#: The settings compared by default: the service's, the window the upload budget first
#: came with (64 KiB), and grpc's own flow control (0).
#: The budget for a setting: at most this many round trips over grpc's own, at 50 ms.
KEEP_WITHIN_RTT = 0.5
BIG_FRAME_BYTES = 1_000_000
PORT = 50051


def big_frame() -> bytes:
    """A JPEG of about 1 MB: the 1280×720 fixture at 2560×1440 with fixed noise, at the
    lowest quality that reaches BIG_FRAME_BYTES (the same bytes on every machine)."""
    image = cv2.imread(str(FACE))
    if image is None:
        raise RuntimeError(f"cannot read {FACE}")
    large = cv2.resize(image, (2560, 1440), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noisy = np.clip(large + np.random.default_rng(1).normal(0, 6, large.shape), 0, 255)
    pixels = noisy.astype(np.uint8)
    for quality in range(80, 101):
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(encoded) >= BIG_FRAME_BYTES:
            return encoded.tobytes()
    raise RuntimeError("could not make a 1 MB frame")


def frames() -> dict[str, bytes]:
    return {"1280x720 fixture": FACE.read_bytes(),
            "1 MB frame": big_frame()}  # fmt: skip


def median_ms(target: str, protocol: str, image: bytes, calls: int) -> float:
    """The median of ``calls`` echo calls on one warm channel (three first, not counted)."""
    transport = make_transport(protocol, "http://unused", target)  # type: ignore[arg-type]
    try:
        for n in range(3):
            transport.detect(image, model="echo", save=False, frame_id=f"warm-{n}")
        times = [transport.detect(image, model="echo", save=False, frame_id=f"w-{n}").latency_ms
                 for n in range(calls)]  # fmt: skip
    finally:
        transport.close()
    return statistics.median(times)


def label_of(window: int) -> str:
    """A window setting's name in the table."""
    if window == 0:
        return "grpc's own (BDP)"
    name = f"{window >> 20} MiB" if window % (1 << 20) == 0 else f"{window >> 10} KiB"
    return f"{name} (default)" if window == Settings().grpc_stream_window_bytes else name


def measure(
    rtts: list[float], calls: int, engine: str, windows: list[int], say: Any = print
) -> dict[str, Any]:
    started = time.time()
    base = Profile("windows", None, None, rtt_ms=rtts[0], source="a round trip alone")
    # The engine the most delayed point needs makes every point, 0 ms included.
    engine = preflight(replace(base, rtt_ms=max(rtts)), engine) or engine
    images = frames()
    cells: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    with ServiceNetwork(base, engine=engine) as network, tempfile.TemporaryDirectory() as tmp:
        target = f"{network.service_ip}:{PORT}"
        for window in windows:
            label = label_of(window)
            env = {"FACEWIRE_HOST": network.service_ip, "FACEWIRE_GRPC_PORT": str(PORT),
                   "FACEWIRE_GRPC_STREAM_WINDOW_BYTES": str(window),
                   "FACEWIRE_LOG_LEVEL": "warning"}  # fmt: skip
            service = Child("grpc_service", env=env, prefix=network.prefix,
                            log=Path(tmp) / f"grpc-{window}.log")  # fmt: skip
            try:
                service.wait_until(lambda: _answers(target), "the gRPC service", 60)
                for rtt in rtts:
                    network.reshape(replace(base, rtt_ms=rtt))
                    if str(rtt) not in checks:
                        checks[str(rtt)] = linkcheck.check(network).as_dict()
                    for frame, image in images.items():
                        for protocol in ("grpc", "grpc-stream"):
                            ms = median_ms(target, protocol, image, calls)
                            cell = {"window": label, "window_bytes": window, "rtt_ms": rtt,
                                    "frame": frame, "frame_bytes": len(image),
                                    "protocol": protocol, "p50_ms": round(ms, 2)}  # fmt: skip
                            cells.append(cell)
                            say(f"{label:>18} {rtt:>5g} ms {frame:>16} {protocol:>11}: "
                                f"{ms:8.2f} ms")  # fmt: skip
            finally:
                service.stop()
        engine_record = network.describe_engine()
    return {
        **machine.run_record("facewire_windows", started),
        "command": "python -m client.bench.windows " + " ".join(sys.argv[1:]),
        "calls": calls,
        "engine": engine_record,
        "link_checks": checks,
        "cells": cells,
    }


def _answers(target: str) -> bool:
    return answers("http://unused", target, protocols=("grpc",))


def verdicts(result: dict[str, Any]) -> list[str]:
    """Each setting at 50 ms against grpc's own: kept or not, by KEEP_WITHIN_RTT."""
    cells = result["cells"]
    grpc_own = label_of(0)
    lines = []
    for label in dict.fromkeys(c["window"] for c in cells):
        if label == grpc_own:
            continue
        worst = 0.0
        for c in cells:
            if c["window"] != label or c["rtt_ms"] != 50:
                continue
            own = next(o for o in cells if o["window"] == grpc_own and o["rtt_ms"] == 50
                       and o["frame"] == c["frame"] and o["protocol"] == c["protocol"])  # fmt: skip
            worst = max(worst, (c["p50_ms"] - own["p50_ms"]) / 50)
        if any(c["rtt_ms"] == 50 for c in cells):
            kept = worst <= KEEP_WITHIN_RTT
            verdict = "within" if kept else "BEYOND"
            lines.append(f"{label}: at most {worst:+.2f} round trips over grpc's own at 50 ms "
                         f"({verdict} the {KEEP_WITHIN_RTT:g} allowed)")  # fmt: skip
    return lines


def report(result: dict[str, Any]) -> str:
    """The table: each cell's median, and the round trips it adds over 0 ms."""
    cells = result["cells"]
    rtts = sorted({c["rtt_ms"] for c in cells})
    zero = {(c["window"], c["frame"], c["protocol"]): c["p50_ms"] for c in cells
            if c["rtt_ms"] == rtts[0]}  # fmt: skip
    header = ["window", "frame", "call", *(f"{r:g} ms RTT" for r in rtts)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = list(dict.fromkeys((c["window"], c["frame"], c["protocol"]) for c in cells))
    for key in keys:
        row = [*key]
        for rtt in rtts:
            cell = next(c for c in cells if (c["window"], c["frame"], c["protocol"]) == key
                        and c["rtt_ms"] == rtt)  # fmt: skip
            added = (cell["p50_ms"] - zero[key]) / rtt if rtt else None
            row.append(f"{cell['p50_ms']:.1f}" + ("" if added is None else f" ({added:.2f} RTT)"))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *(f"- {line}" for line in verdicts(result))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        print(report(json.loads((Path(argv[1]) / RESULTS_JSON).read_text())), end="")
        return 0
    p = argparse.ArgumentParser(prog="python -m client.bench.windows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rtt-ms", default="0,50,150", help="round trips, the first the baseline")
    p.add_argument("--calls", type=int, default=15)
    p.add_argument("--windows", help="window settings in bytes (0: grpc's own); default: "
                   "the service's, 65536 and 0")  # fmt: skip
    p.add_argument("--link-engine", choices=("auto", *ENGINES), default="auto")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rtts = [float(v) for v in args.rtt_ms.split(",")]
    try:
        default = Settings().grpc_stream_window_bytes
        windows = [int(v) for v in args.windows.split(",")] if args.windows else [
            default, 64 << 10, 0]  # fmt: skip
        result = measure(rtts, args.calls, args.link_engine, windows)
    except (ProfileError, NetworkError) as error:
        print(f"facewire windows: {error}", file=sys.stderr)
        return 2
    out: Path = args.out or Path("windows-results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    (out / REPORT_MD).write_text(report(result))
    print(report(result))
    print(f"results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
