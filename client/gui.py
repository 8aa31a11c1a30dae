"""The window: shows the engine's state and turns hotkeys into engine calls."""

from __future__ import annotations

import logging
import time
from collections import deque

import cv2

from client.engine import Engine, ProtocolWorker
from client.render import PanelView, View, render
from client.sources import Image
from facewire.pipeline import centre_crop

log = logging.getLogger("facewire.client")

TITLE = "facewire: REST vs gRPC"
KEY_MODES = {ord("1"): "rest", ord("2"): "grpc", ord("3"): "both", ord("4"): "stream"}
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


def build_view(engine: Engine, display_fps: float, notice: str) -> View:
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


def run_window(engine: Engine, notice: str = "", log_every: float = 10.0) -> None:
    """Show the window until q, Esc or the window is closed."""
    cv2.namedWindow(TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    shown_at: deque[float] = deque(maxlen=30)
    log.info("window open")
    next_log = time.monotonic() + log_every
    while True:
        shown_at.append(time.monotonic())
        if log_every > 0 and shown_at[-1] >= next_log:
            log_stats(engine)
            next_log = shown_at[-1] + log_every
        span = shown_at[-1] - shown_at[0]
        fps = (len(shown_at) - 1) / span if span > 0 else 0.0
        cv2.imshow(TITLE, render(build_view(engine, fps, notice)))
        key = cv2.waitKey(15)
        if key != -1 and not handle_key(engine, key & 0xFF):
            break
        if cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1:
            break  # closed with the window manager's button
    cv2.destroyAllWindows()
    cv2.waitKey(1)
    log.info("window closed")
