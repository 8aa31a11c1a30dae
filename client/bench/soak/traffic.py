"""The soak's traffic: every protocol at a fixed rate (some saving), and hostile
requests that must be refused with a clear error."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator

from client.bench.soak.ledger import Ledger
from client.transports import ProtocolName, TransportError, make_transport
from facewire.settings import MiB

#: The kind hostile requests are counted under.
HOSTILE = "hostile"


def error_label(error: TransportError) -> str:
    """A short, fixed label: 'HTTP 413', 'INVALID_ARGUMENT', 'timeout', 'unreachable'."""
    if error.kind == "rejected":
        return error.message.split(":", 1)[0]
    return error.kind


#: What a hostile request may get: a refusal that names the client's mistake.
EXPECTED_REFUSALS = {"HTTP 400", "HTTP 404", "HTTP 413", "HTTP 415", "HTTP 422"} | {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
}


def hostile_inputs(face: bytes, rng: random.Random) -> list[tuple[str, bytes, str]]:
    """(name, body, model): each must be refused; none may crash or hang a service."""
    return [
        ("truncated JPEG", face[: len(face) // 3], "haar"),
        ("random bytes", rng.randbytes(50_000), "haar"),
        ("oversized upload", rng.randbytes(9 * MiB), "haar"),
        ("unknown model", face, "no-such-model"),
        ("empty body", b"", "haar"),
    ]


def schedule(
    start: float, rate: float, phase: float, stop: threading.Event
) -> Iterator[tuple[int, float]]:
    """(n, due time) for the n-th request at ``rate`` per second, ``phase`` periods in,
    each yielded once its time has come; ends when ``stop`` is set."""
    for n in itertools.count():
        due = start + (n + phase) / rate
        if stop.wait(max(0.0, due - time.perf_counter())):
            return
        yield n, due


def traffic(
    protocol: ProtocolName,
    rate: float,
    phase: float,
    save_every: int,
    frames: list[bytes],
    urls: tuple[str, str],
    ledger: Ledger,
    stop: threading.Event,
) -> None:
    """One stream of requests at ``rate`` per second, open loop: each is due at a fixed
    time, and its latency runs from then, however late the previous answer was.
    ``phase`` (a fraction of the period) staggers the streams, so that they interleave
    instead of all arriving at once."""
    transport = make_transport(protocol, *urls)
    try:
        for n, due in schedule(ledger.start, rate, phase, stop):
            save = save_every > 0 and n % save_every == save_every - 1
            frame_id = f"soak-{protocol}-{n}"
            error, saved = None, None
            try:
                reply = transport.detect(
                    frames[n % len(frames)], model="haar", save=save, frame_id=frame_id
                )
            except TransportError as exc:
                error = error_label(exc)
            else:
                if save:
                    saved = (reply.result.saved_image or "", frame_id)
            if save:
                ledger.count_save(answered=error is None)
            ledger.record(protocol, due, error, saved)
    finally:
        transport.close()


def hostile_traffic(
    rate: float, face: bytes, urls: tuple[str, str], ledger: Ledger, stop: threading.Event
) -> None:
    """Bad requests at ``rate`` per second, alternately to each service."""
    rng = random.Random(7)  # noqa: S311 (test data, not secrets)
    inputs = hostile_inputs(face, rng)
    transports = {p: make_transport(p, *urls) for p in ("rest", "grpc")}
    try:
        # Half a period in: between the other streams' arrivals.
        for n, due in schedule(ledger.start, rate, 0.5, stop):
            _, body, model = inputs[n % len(inputs)]
            transport = transports["rest" if n % 2 else "grpc"]
            try:
                transport.detect(body, model=model, save=False, frame_id=f"hostile-{n}")
            except TransportError as exc:
                label = error_label(exc)
                ok = label in EXPECTED_REFUSALS
                ledger.record(HOSTILE, due, None if ok else f"unexpected {label}", None)
            else:
                ledger.record(HOSTILE, due, "answered a bad request", None)
    finally:
        for transport in transports.values():
            transport.close()
