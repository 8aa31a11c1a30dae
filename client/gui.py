"""The window: shows the engine's state and turns hotkeys into engine calls."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import cv2

from client.engine import Engine, ProtocolWorker
from client.render import PanelView, View, render
from client.sources import Image
from facewire.pipeline import centre_crop

log = logging.getLogger("facewire.client")

TITLE = "facewire: REST vs gRPC"
KEY_MODES = {ord("1"): "rest", ord("2"): "grpc", ord("3"): "both", ord("4"): "stream",
             ord("5"): "ws", ord("6"): "h2"}  # fmt: skip
QUIT_KEYS = {ord("q"), ord("Q"), 27}  # 27: Esc


def panel_view(worker: ProtocolWorker) -> PanelView:
    shown = worker.shown
    stats = worker.stats.snapshot()
    if shown is None:
        return PanelView(worker.protocol, None, (), stats)
    crop = shown.reply.result.crop
    image: Image
    if crop.size > 0:  # the square the server says it analysed
        image = shown.frame.image[crop.y : crop.y + crop.size, crop.x : crop.x + crop.size]
    else:  # echo analyses nothing: show the square it would have taken
        image, _ = centre_crop(shown.frame.image)
    return PanelView(worker.protocol, image, shown.reply.result.boxes, stats)


def build_view(engine: Engine, display_fps: float, notice: str, link: str = "loopback") -> View:
    newest = engine.slot.newest()
    size = None if newest is None else (newest.image.shape[1], newest.image.shape[0])
    return View(
        mode=engine.mode,
        save=engine.save,
        source=engine.source.description,
        frame_size=size,
        jpeg_quality=engine.jpeg_quality,
        model=engine.model,
        encode_ms=None if newest is None else newest.encode_ms,
        display_fps=display_fps,
        panels=tuple(panel_view(w) for w in engine.active_workers()),
        notice=engine.source_error or notice,
        link=link,
    )


def handle_key(engine: Engine, key: int) -> bool:
    """Apply one key press; False means quit."""
    if key in QUIT_KEYS:
        return False
    if key in KEY_MODES:
        engine.set_mode(KEY_MODES[key])
    elif key in (ord("s"), ord("S")):
        engine.toggle_save()
    elif key in (ord("r"), ord("R")):
        engine.reset()
    return True


def log_stats(engine: Engine) -> None:
    """One line per active protocol: a record of the session in the terminal."""
    for worker in engine.active_workers():
        s = worker.stats.snapshot()
        latency = s.latency
        pcts = "-" if latency is None else f"{latency.p50:.1f}/{latency.p95:.1f}/{latency.p99:.1f}"
        log.info(
            "%s: n=%d p50/p95/p99=%s ms, %.1f responses/s, errors %d",
            worker.protocol,
            s.count,
            pcts,
            s.throughput,
            s.errors,
        )


@dataclass
class WindowRates:
    """How fast the window redrew, and how often each panel's figures changed."""

    seconds: float = 0.0
    frames: int = 0
    updates: dict[str, int] = field(default_factory=dict)  # new answers shown, by protocol

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def update_rate(self, protocol: str) -> float:
        return self.updates.get(protocol, 0) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": self.seconds,
            "frames": self.frames,
            "fps": self.fps,
            "updates_per_s": {p: self.update_rate(p) for p in self.updates},
        }

    def describe(self) -> str:
        panels = ", ".join(f"{p} {self.update_rate(p):.1f}/s" for p in self.updates) or "none"
        return (
            f"window: {self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps); "
            f"overlay updates: {panels}"
        )


def run_window(
    engine: Engine,
    notice: str = "",
    log_every: float = 10.0,
    duration: float | None = None,
    *,
    link: str = "loopback",
) -> WindowRates:
    """Show the window until q, Esc, the window is closed, or ``duration`` seconds."""
    cv2.namedWindow(TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    shown_at: deque[float] = deque(maxlen=30)
    log.info("window open; link: %s", link)
    started = time.monotonic()
    next_log = started + log_every
    rates = WindowRates()
    last_shown: dict[str, object] = {}
    while True:
        now = time.monotonic()
        shown_at.append(now)
        if duration is not None and now - started >= duration:
            break
        if log_every > 0 and now >= next_log:
            log_stats(engine)
            next_log = now + log_every
        span = shown_at[-1] - shown_at[0]
        fps = (len(shown_at) - 1) / span if span > 0 else 0.0
        view = build_view(engine, fps, notice, link)
        cv2.imshow(TITLE, render(view))
        rates.frames += 1
        for worker in engine.active_workers():
            if worker.shown is not None and worker.shown is not last_shown.get(worker.protocol):
                last_shown[worker.protocol] = worker.shown
                rates.updates[worker.protocol] = rates.updates.get(worker.protocol, 0) + 1
        key = cv2.waitKey(15)
        if key != -1 and not handle_key(engine, key & 0xFF):
            break
        if cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1:
            break  # closed with the window manager's button
    rates.seconds = time.monotonic() - started
    cv2.destroyAllWindows()
    cv2.waitKey(1)
    log.info("window closed; %s", rates.describe())
    return rates
