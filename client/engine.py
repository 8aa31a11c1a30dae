"""Runs capture and one worker per protocol, independently of the display.

- Capture reads the source, JPEG-encodes each frame once, and publishes it as the
  newest frame. Workers always take the newest, so stale frames are dropped and a slow
  protocol never holds back a fast one (or the window).
- Each protocol has its own thread and its own connection. In mode ``both`` the REST and
  gRPC workers get the very same encoded bytes at the same moment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from client.sources import FrameSource, Image, SourceError
from client.stats import ProtocolStats
from client.transports import ProtocolName, Reply, Transport, TransportError

log = logging.getLogger("facewire.client")

MODES: dict[str, tuple[ProtocolName, ...]] = {
    "rest": ("rest",),
    "grpc": ("grpc",),
    "both": ("rest", "grpc"),
    "stream": ("grpc-stream",),
    "ws": ("rest-ws",),
    # REST over HTTP/2: a REST service on Granian ($FACEWIRE_REST_H2_URL, which make run
    # starts, else the REST URL; uvicorn's answers that it does not speak HTTP/2).
    "h2": ("rest-h2",),
}
#: Every protocol a mode shows, each with its own worker.
GUI_PROTOCOLS: tuple[ProtocolName, ...] = tuple(dict.fromkeys(p for m in MODES.values() for p in m))
RETRY_SECONDS = 0.5  # pause after an unreachable server before trying again
QUIT_WAIT_S = 1.0  # how long quitting waits, in all, for workers to finish


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    image: Image
    jpeg: bytes
    encode_ms: float
    #: Options stamped at capture, so that "save on from frame N" is exact.
    model: str = "haar"
    save: bool = False


class FrameSlot:
    """The newest frame; waiting readers wake when a newer one is published."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._changed = threading.Condition()

    def publish(self, frame: Frame) -> None:
        with self._changed:
            self._frame = frame
            self._changed.notify_all()

    def newest(self) -> Frame | None:
        with self._changed:
            return self._frame

    def wait_newer(self, seq: int, timeout: float) -> Frame | None:
        """A frame newer than ``seq``, or None after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._frame is not None and self._frame.seq > seq, timeout
            )
            frame = self._frame
        return frame if frame is not None and frame.seq > seq else None


@dataclass(frozen=True, slots=True)
class Shown:
    """A protocol's latest answer with the frame it was for."""

    frame: Frame
    reply: Reply


class ProtocolWorker:
    def __init__(
        self,
        protocol: ProtocolName,
        connect: Callable[[ProtocolName], Transport],
        slot: FrameSlot,
    ) -> None:
        self.protocol = protocol
        self.stats = ProtocolStats(protocol)
        self.shown: Shown | None = None
        self._connect = connect
        self._slot = slot
        self._active = threading.Event()
        self._stop = threading.Event()
        self._transport: Transport | None = None
        self._thread = threading.Thread(target=self._run, name=f"worker-{protocol}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_active(self, active: bool) -> None:
        """Called on every mode change. An active protocol's next answers are warm-up
        again: the load just changed, even for a protocol that stays on."""
        if active:
            if not self._active.is_set():
                self.shown = None  # never show a picture from an earlier activation
                self.stats.set_state("connecting")
            self.stats.activate()
            self._active.set()
        elif self._active.is_set():
            self._active.clear()
            self.stats.deactivate()

    def stop(self) -> None:
        """Ask the thread to end, and close its connection: a request waiting on a stalled
        server then fails at once instead of holding the quit up for its timeout."""
        self._stop.set()
        self._active.set()  # wake it so it sees the stop
        if self._transport is not None:
            self._transport.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._transport is not None:  # one made while stop() ran; closing is idempotent
            self._transport.close()

    def _run(self) -> None:
        seen = -1
        while not self._stop.is_set():
            if not self._active.wait(0.2):
                continue
            frame = self._slot.wait_newer(seen, 0.2)
            if frame is None or self._stop.is_set() or not self._active.is_set():
                continue
            seen = frame.seq
            self._send(frame)

    def _send(self, frame: Frame) -> None:
        previous = self.stats.state
        try:
            if self._transport is None:
                self._transport = self._connect(self.protocol)
            reply = self._transport.detect(
                frame.jpeg, model=frame.model, save=frame.save, frame_id=str(frame.seq)
            )
        except Exception as error:
            if self._stop.is_set():
                return  # the connection was closed under the request to quit promptly
            if not isinstance(error, TransportError):
                raise
            state = "unreachable" if error.kind == "unreachable" else "error"
            if state != previous:
                log.info("%s: %s (%s)", self.protocol, state, error.message)
            self.stats.record_error(state, error.message)
            if error.kind == "unreachable":
                self._stop.wait(RETRY_SECONDS)  # the server is down: do not spin
            return
        if previous != "connected":
            log.info("%s: connected", self.protocol)
        self.stats.record(
            reply.latency_ms, reply.result.timings.in_server, reply.bytes_sent, reply.bytes_received
        )
        self.shown = Shown(frame, reply)


class Engine:
    """Capture, encode once, fan out to the active protocols; the GUI only reads it."""

    def __init__(
        self,
        source: FrameSource,
        connect: Callable[[ProtocolName], Transport],
        *,
        mode: str = "rest",
        model: str = "haar",
        jpeg_quality: int = 90,
    ) -> None:
        self.source = source
        self.model = model
        self.jpeg_quality = jpeg_quality
        self.save = False
        self.mode = mode
        self.source_error = ""
        self.slot = FrameSlot()
        self.workers = {p: ProtocolWorker(p, connect, self.slot) for p in GUI_PROTOCOLS}
        self._options_lock = threading.Lock()  # save and the next frame number change together
        self._next_seq = 0
        self._stop = threading.Event()
        self._capture = threading.Thread(target=self._capture_loop, name="capture", daemon=True)

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()
        self._capture.start()
        self.set_mode(self.mode)

    def set_mode(self, mode: str) -> None:
        active = MODES[mode]
        self.mode = mode
        for protocol, worker in self.workers.items():
            worker.set_active(protocol in active)
        log.info("mode -> %s", mode)

    def toggle_save(self) -> int:
        """Flip saving; returns the first frame number the new setting applies to."""
        with self._options_lock:
            self.save = not self.save
            log.info("save -> %s from frame %d", "on" if self.save else "off", self._next_seq)
            return self._next_seq

    def reset(self) -> None:
        for worker in self.workers.values():
            worker.stats.reset()
        log.info("metrics reset")

    def active_workers(self) -> list[ProtocolWorker]:
        return [self.workers[p] for p in MODES[self.mode]]

    def stop(self) -> list[str]:
        """Stop capture and workers, close connections and release the source.

        Closing a transport ends its outstanding call at once (gRPC cancels it; REST shuts
        its socket down). A worker that still has not ended after a bounded wait is left
        behind (its thread is a daemon). Returns the protocols left behind.
        """
        self._stop.set()
        for worker in self.workers.values():
            worker.stop()
        deadline = time.monotonic() + QUIT_WAIT_S
        self._capture.join(timeout=QUIT_WAIT_S)
        for worker in self.workers.values():
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self.source.close()
        left: list[str] = [p for p, w in self.workers.items() if w.alive]
        if left:
            log.info("quit without waiting for %s: a request is still outstanding", left)
        return left

    def _capture_loop(self) -> None:
        period = 1.0 / self.source.fps if self.source.fps else 0.0
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                image = self.source.read()
            except SourceError as error:
                self.source_error = str(error)
                log.warning("source: %s", error)
                self._stop.wait(1.0)
                continue
            with self._options_lock:
                seq, save = self._next_seq, self.save
                self._next_seq += 1
            self.slot.publish(encode_frame(seq, image, self.jpeg_quality, self.model, save))
            if period:  # files and the sample are paced; cameras pace themselves
                due += period
                self._stop.wait(max(0.0, due - time.monotonic()))
                due = max(due, time.monotonic() - period)  # never try to catch up a backlog


def encode_frame(
    seq: int, image: Image, quality: int, model: str = "haar", save: bool = False
) -> Frame:
    start = time.perf_counter_ns()
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("JPEG encoding failed")
    encode_ms = (time.perf_counter_ns() - start) / 1e6
    return Frame(seq, image, np.asarray(buffer).tobytes(), encode_ms, model, save)
