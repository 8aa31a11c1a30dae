"""``python -m client.bench``: measure REST and gRPC the same way; ``... report DIR`` rebuilds.

Examples:
  python -m client.bench --start-services --inprocess                  # the default sweep
  python -m client.bench --rate 10,20,40 --arrivals poisson --models haar
  python -m client.bench --jpeg-quality 50 --resolution 640x360 --concurrency 1
  python -m client.bench --sweep-rtt 0,20,80,150 --sweep-loss 0,1,3 --models echo   # root
  python -m client.bench report bench-results/latest
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import cv2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.bench import agreement, machine, report, sweep
from client.bench.floor import measure_floor
from client.bench.h2load import H2loadError
from client.bench.runner import BenchConfig, config_dict, run_sweep
from client.engine import encode_frame
from client.network import linkcheck
from client.network.namespace import NetworkError, ServiceNetwork, preflight, service_network
from client.network.options import add_network_options, profile_from
from client.network.profiles import ProfileError
from client.processes import free_port
from client.sources import Image, SourceError, open_source
from client.transports import ALL_PROTOCOLS, HTTP2_PROTOCOLS, PAYLOAD_FORMS, PROTOCOLS

MODELS = ("haar", "decode", "echo")
GENERATORS = ("python", "h2load")


def _list(kind: type, choices: tuple[str, ...] | None = None, *, zero: bool = False) -> Any:
    """A comma-separated list of ``kind``: numbers above 0 (or 0 and up, ``zero``)."""

    def parse(text: str) -> tuple[Any, ...]:
        try:
            values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {kind.__name__}: {text}") from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        if choices and any(v not in choices for v in values):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        if kind in (int, float) and any(v < 0 or (v == 0 and not zero) for v in values):
            raise argparse.ArgumentTypeError(
                f"every value must be {'0 or ' if zero else ''}above 0"
            )
        return values

    return parse


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError("must be above 0")
        return value

    return parse


def _resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("WIDTHxHEIGHT, e.g. 1280x720") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError("width and height must be at least 1")
    return width, height


def _quality(text: str) -> int:
    value = _positive(int)(text)
    if value > 100:
        raise argparse.ArgumentTypeError("JPEG quality goes from 1 to 100")
    return int(value)


def _processes(text: str) -> str:
    if text != "auto":
        _positive(int)(text)
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m client.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--protocols",
        type=_list(str, (*ALL_PROTOCOLS, *HTTP2_PROTOCOLS, *PAYLOAD_FORMS)),
        default=PROTOCOLS,
        help="rest, grpc, grpc-stream (the default), REST's WebSocket stream rest-ws, "
        "the Open Inference Protocol's rest-v2 and grpc-v2, REST over HTTP/2 (rest-h2, "
        "rest-h2-protobuf: --start-services adds a REST service on Granian for them), "
        "and REST's other payload forms: rest-multipart, rest-v2-json, rest-protobuf",
    )
    p.add_argument("--models", type=_list(str, MODELS), default=("haar", "echo"))
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=_list(int),
                      help="closed loop: requests kept in flight (default 1,2,4; "
                      "a sweep's 1,8)")  # fmt: skip
    load.add_argument("--rate", type=_list(float), default=(),
                      help="open loop: requests per second, e.g. 10,20,40")  # fmt: skip
    p.add_argument("--arrivals", choices=("constant", "poisson"), default="constant")
    p.add_argument(
        "--max-inflight", type=_positive(int), default=64, help="open loop: in-flight cap"
    )
    p.add_argument("--window", type=_positive(float), default=2.0, help="window length in seconds")
    p.add_argument(
        "--window-requests", type=_positive(int), help="window length in requests instead"
    )
    p.add_argument("--tolerance", type=_positive(float), default=0.10, help="stability: ±fraction")
    p.add_argument("--stable-windows", type=_positive(int), default=3)
    p.add_argument("--max-windows", type=_positive(int), default=8, help="per protocol and point")
    p.add_argument(
        "--warmup", type=_positive(float), default=1.0, help="seconds per protocol and point"
    )
    p.add_argument(
        "--processes",
        default="auto",
        type=_processes,
        help="load processes, or auto: 1, more where the generator is the bottleneck",
    )
    p.add_argument(
        "--scheduler",
        help="a Dask scheduler (tcp://HOST:8786): its workers, on any machines, generate "
        "the load instead of local processes (docs/scaling.md)",
    )
    p.add_argument("--source", default="sample", help="sample, camera index, video, folder")
    p.add_argument("--frames", type=_positive(int), default=30, help="frames taken from the source")
    p.add_argument("--resolution", type=_resolution, help="resize frames, e.g. 640x360")
    p.add_argument("--jpeg-quality", type=_quality, default=90, help="1 to 100")
    p.add_argument("--inprocess", action="store_true", help="also measure the no-protocol floor")
    p.add_argument("--rest-url", default="http://127.0.0.1:8001")
    p.add_argument("--grpc-target", default="127.0.0.1:50051")
    p.add_argument("--start-services", action="store_true",
                   help="start both services for the run (or use the ones running)")  # fmt: skip
    p.add_argument(
        "--generator",
        type=_list(str, GENERATORS),
        default=("python",),
        help="python (facewire's client, the default), h2load (nghttp2's, for rest and "
        "grpc), or python,h2load: both, window by window",
    )
    p.add_argument("--grpc-metrics-url", help="h2load: the gRPC service's /metrics (the bench "
                   "knows it when it starts the services)")  # fmt: skip
    p.add_argument(
        "--new-connection-per-request",
        action="store_true",
        help="a new connection for every request (rest, grpc), not one kept alive",
    )
    add_network_options(p)
    sweep = p.add_argument_group(
        "round-trip sweep", "rest kept alive, rest with a new connection per request, rest "
        "over TLS, grpc and grpc-stream at each round trip and loss, behind one link "
        "(root; services started for it; the network options give its rates)",
    )  # fmt: skip
    sweep.add_argument("--sweep-rtt", type=_list(float, zero=True),
                       help="round trips, ms: 0,20,80,150")  # fmt: skip
    sweep.add_argument(
        "--sweep-loss", type=_list(float, zero=True), help="loss each way, %%: 0,1,3"
    )
    p.add_argument("--out", type=Path, help="output folder (default bench-results/<UTC time>)")
    p.add_argument("--seed", type=int, default=1)
    return p


def prepare_frames(args: argparse.Namespace) -> tuple[list[bytes], dict[str, Any]]:
    """Every frame, encoded once before the run."""
    source, _ = open_source(args.source)
    try:
        images = [source.read() for _ in range(args.frames)]
    finally:
        source.close()
    if args.resolution:
        images = [
            cast(Image, cv2.resize(i, args.resolution, interpolation=cv2.INTER_AREA))
            for i in images
        ]
    encoded = [encode_frame(n, image, args.jpeg_quality) for n, image in enumerate(images)]
    frames = [f.jpeg for f in encoded]
    height, width = images[0].shape[:2]
    info = {
        "source": args.source,
        "count": len(frames),
        "width": width,
        "height": height,
        "jpeg_quality": args.jpeg_quality,
        "mean_bytes": sum(map(len, frames)) / len(frames),
        "encode_ms": sum(f.encode_ms for f in encoded) / len(encoded),
    }
    return frames, info


def run(args: argparse.Namespace, console: Console) -> int:
    sweeping = bool(args.sweep_rtt or args.sweep_loss)
    concurrency = args.concurrency or ((1, 8) if sweeping else (1, 2, 4))
    config = BenchConfig(
        protocols=args.protocols,
        models=args.models,
        concurrency=concurrency if not args.rate else (),
        rates=args.rate,
        arrivals=args.arrivals,
        max_inflight=args.max_inflight,
        window_s=args.window,
        window_requests=args.window_requests,
        tolerance=args.tolerance,
        stable_windows=args.stable_windows,
        max_windows=max(args.max_windows, args.stable_windows),
        warmup_s=args.warmup,
        processes=None if args.processes == "auto" else int(args.processes),
        seed=args.seed,
        generators=args.generator,
        new_connection=args.new_connection_per_request,
        scheduler=args.scheduler,
    )
    if config.new_connection and "grpc-stream" in config.protocols:
        console.print(
            "[red]facewire bench: --new-connection-per-request does not apply to "
            "grpc-stream (one long-lived stream): --protocols rest,grpc[/red]"
        )
        return 2
    try:
        profile = profile_from(args)
        # Not root, no engine for a delay, or beyond the engine: say so before anything runs.
        preflight(profile, args.link_engine)
    except (ProfileError, NetworkError) as error:
        console.print(f"[red]facewire bench: {error}[/red]", soft_wrap=True)
        return 2
    try:
        frames, frame_info = prepare_frames(args)
    except SourceError as error:
        console.print(f"[red]facewire bench: {error}[/red]", soft_wrap=True)
        return 2
    out = args.out or Path("bench-results") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if sweeping:
        return run_link_sweep(args, config, frames, frame_info, out, console)
    floors = {}
    if args.inprocess:
        for model in (m for m in config.models if m != "echo"):  # echo has no pipeline work
            console.print(f"floor: in-process pipeline, model {model}")
            floors[model] = measure_floor(frames, model)
    started = time.time()
    try:
        with service_network(profile, args.link_engine) as network:
            points, link = _measure(args, config, frames, frame_info, floors, network, console)
    except (ProfileError, NetworkError, H2loadError, RuntimeError) as error:
        console.print(f"[red]facewire bench: {error}[/red]", soft_wrap=True)
        return 1
    result = {
        **machine.run_record("facewire_bench", started),
        "command": "python -m client.bench " + shlex.join(sys.argv[1:]),
        "config": config_dict(config),
        "network": profile.as_dict(),
        "link": link,
        "connections": "a new connection per request"
        if config.new_connection
        else "kept alive (one per client thread)",
        "frames": frame_info,
        "floor": floors,
        "points": points,
    }
    report.write_all(result, out)
    report.print_table(result, console)
    console.print(f"results in {out}/ ({report.REPORT_MD}, {report.RESULTS_CSV}, "
                  f"{report.RESULTS_JSON}, plots)")  # fmt: skip
    failed = [p for p in points if p["generator"] == "h2load" and p["error_count"]]
    if failed:
        # h2load counts a refused gRPC call (HTTP 200, grpc-status not OK) as a success;
        # the services' own counters did not: the run fails, as it would have in Python.
        console.print(f"[red]facewire bench: h2load's requests failed at "
                      f"{len(failed)} point(s); see the errors column[/red]")  # fmt: skip
        return 1
    return 0


def run_link_sweep(
    args: argparse.Namespace,
    config: BenchConfig,
    frames: list[bytes],
    frame_info: dict[str, Any],
    out: Path,
    console: Console,
) -> int:
    """``--sweep-rtt``/``--sweep-loss``: client.bench.sweep, its results in ``out``."""
    started = time.time()
    try:
        found = sweep.run(config, frames, profile_from(args), list(args.sweep_rtt or (0.0,)),
                          list(args.sweep_loss or (0.0,)), args.link_engine,
                          lambda line: console.print(line, soft_wrap=True))  # fmt: skip
    except (ProfileError, NetworkError, RuntimeError) as error:
        console.print(f"[red]facewire bench: {error}[/red]", soft_wrap=True)
        return 1
    result = {
        **machine.run_record("facewire_sweep", started),
        "command": "python -m client.bench " + shlex.join(sys.argv[1:]),
        "config": config_dict(config),
        "frames": frame_info,
        **found,
    }
    sweep.write(result, out)
    console.print(sweep.report(result))
    console.print(f"results in {out}/ ({sweep.RESULTS_JSON}, {sweep.REPORT_MD}, {sweep.PLOT})")
    # Under loss a request can time out (a SYN lost three times is 7 s): data, reported
    # per cell. Without loss, a failed request is a fault of the run.
    errors = sum(int(p["error_count"]) for p in found["points"] if not p["loss_pct"])
    if errors:
        console.print(f"[red]facewire bench: {errors} requests failed with no loss[/red]")
        return 1
    return 0


def _measure(
    args: argparse.Namespace,
    config: BenchConfig,
    frames: list[bytes],
    frame_info: dict[str, Any],
    floors: dict[str, dict[str, float]],
    network: ServiceNetwork | None,
    console: Console,
) -> tuple[list[dict[str, object]], dict[str, Any] | None]:
    """The sweep, against the services given, or started here (behind ``network`` when
    there is one): its points, and the link check."""
    rest_url, grpc_target = args.rest_url, args.grpc_target
    # Series take turns window by window, so a connection idles while the others run;
    # uvicorn's default keep-alive (5 s) would close REST's "kept-alive" connection
    # between its windows, which a client sending continuously never sees.
    env: dict[str, str] = {"FACEWIRE_KEEP_ALIVE_S": str(sweep.KEEP_ALIVE_S)}
    metrics: tuple[str, str] | None = None
    if "h2load" in config.generators and args.start_services:
        env["FACEWIRE_GRPC_METRICS_PORT"] = str(free_port())
    services: contextlib.AbstractContextManager[tuple[str, str]] = contextlib.nullcontext(
        (rest_url, grpc_target)
    )
    if args.start_services or network is not None:
        from client.lab import services as start_services

        rest_h2 = any(p in HTTP2_PROTOCOLS for p in config.protocols)
        services = start_services(rest_url, grpc_target, network, env, rest_h2)
    link = None
    total = len(config.models) * len(config.levels) * len(config.series) * config.max_windows
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with services as (rest_url, grpc_target):
        if network is not None:
            console.print(f"network: {network.profile.describe()}")
            link = linkcheck.record(network, console.print)
        if "h2load" in config.generators:
            grpc_host = grpc_target.rsplit(":", 1)[0]
            grpc_metrics = args.grpc_metrics_url or (
                f"http://{grpc_host}:{env['FACEWIRE_GRPC_METRICS_PORT']}/metrics"
                if "FACEWIRE_GRPC_METRICS_PORT" in env
                else None
            )
            if grpc_metrics is None:
                raise H2loadError(
                    "h2load checks every answer against the gRPC service's counters: "
                    "give --grpc-metrics-url (compose: port 9464)"
                )
            metrics = (f"{rest_url}/metrics", grpc_metrics)
        agreed = agreement.check(config.protocols, frames[0], rest_url, grpc_target)
        console.print(agreed)
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("windows (at most)", total=total)

            def advance(model: str, level: float, series: str) -> None:
                progress.update(task, advance=1, description=f"{model} {level:g} {series}")

            points = run_sweep(config, frames, rest_url, grpc_target,
                               encode_ms=frame_info["encode_ms"], floors=floors,
                               progress=advance, metrics_urls=metrics)  # fmt: skip
    return points, link


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING)
    console = Console(width=None if sys.stdout.isatty() else 150)  # logs: do not squeeze
    if argv[:1] == ["report"]:
        if len(argv) != 2:
            console.print("usage: python -m client.bench report DIR")
            return 2
        folder = Path(argv[1])
        if (folder / "sweep.json").exists():
            result = json.loads((folder / sweep.RESULTS_JSON).read_text())
            sweep.write(result, folder)
            console.print(sweep.report(result))
            return 0
        rebuilt = report.rebuild(folder)
        report.print_table(rebuilt, console)
        return 0
    args = parser().parse_args(argv)
    try:
        return run(args, console)
    except KeyboardInterrupt:
        console.print("[yellow]facewire bench: interrupted; no results written[/yellow]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
