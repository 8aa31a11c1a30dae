"""``python -m client``: the webcam GUI, or ``--headless`` for a short comparison."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from client.engine import MODES, Engine
from client.sources import SourceError, open_source
from client.summary import print_table, write_csv
from client.transports import PROTOCOLS, ProtocolName, Transport, make_transport

log = logging.getLogger("facewire.client")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    p.add_argument("--source", default="0", help="camera index, video file, folder, sample, auto")
    p.add_argument("--rest-url", default="http://127.0.0.1:8001")
    p.add_argument("--grpc-target", default="127.0.0.1:50051")
    p.add_argument("--mode", choices=list(MODES), default="rest", help="mode to start in")
    p.add_argument("--jpeg-quality", type=int, default=90, choices=range(1, 101), metavar="1-100")
    p.add_argument("--width", type=int, default=1280, help="asked of the camera")
    p.add_argument("--height", type=int, default=720, help="asked of the camera")
    p.add_argument("--model", choices=("haar", "decode", "echo"), default="haar")
    p.add_argument("--summary-csv", type=Path, help="write the summary table here on quit")
    p.add_argument("--log-every", type=float, default=10.0, help="seconds between stats lines")
    p.add_argument("--duration", type=float, help="close the window after this many seconds")
    p.add_argument("--rates-json", type=Path, help="on close, write the window's redraw rates")
    p.add_argument("--headless", action="store_true", help="no window: compare and print")
    p.add_argument("--frames", type=int, default=100, help="frames per protocol (--headless)")
    p.add_argument("--link", default="loopback",
                   help="what lies between client and services, for the overlay and summary "
                   "(make run sets it)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        source, notice = open_source(args.source, args.width, args.height)
    except SourceError as error:
        print(f"facewire client: {error}", file=sys.stderr)
        return 2
    if notice:
        log.info("%s", notice)

    def connect(protocol: ProtocolName) -> Transport:
        return make_transport(protocol, args.rest_url, args.grpc_target)

    if args.headless:
        from client.headless import compare

        try:
            summaries = compare(
                source,
                connect,
                PROTOCOLS,
                frames=args.frames,
                model=args.model,
                jpeg_quality=args.jpeg_quality,
            )
        finally:
            source.close()
    else:
        from client.gui import run_window

        engine = Engine(
            source, connect, mode=args.mode, model=args.model, jpeg_quality=args.jpeg_quality
        )
        engine.start()
        try:
            rates = run_window(engine, notice, args.log_every, args.duration, link=args.link)
        finally:
            engine.stop()
        if args.rates_json:
            args.rates_json.write_text(json.dumps(rates.as_dict()))
        every = [worker.stats.summary() for worker in engine.workers.values()]
        summaries = [s for s in every if s.count or s.errors]  # the protocols that were used
    print_table(summaries, link=args.link)
    if args.summary_csv:
        write_csv(summaries, args.summary_csv, link=args.link)
        log.info("summary written to %s", args.summary_csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
