"""Draws the window: a pure function from a ``View`` to a BGR image, no display needed.

The canvas is 1280×680 in every mode, so the window (with a title bar) fits a 1366×768
screen and never resizes when the mode changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from client.sources import Image
from client.stats import Percentiles, StatsSnapshot
from facewire.messages import FRAME_SIZE, Box

CANVAS_W, CANVAS_H = 1280, 680
HEADER_H = 58
MARGIN = 8
SLOT_W = (CANVAS_W - 3 * MARGIN) // 2  # two panels side by side
IMAGE_SIDE = 440
CARD_H = CANVAS_H - HEADER_H - IMAGE_SIDE - 3 * MARGIN

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.48
LINE_H = 19

BACKGROUND = (32, 28, 26)
CARD = (48, 44, 42)
TEXT = (235, 235, 235)
DIM = (160, 160, 160)
WARN = (60, 200, 255)
BAD = (80, 80, 240)
#: Box and title colour per protocol (BGR); the GUI test looks for these pixels.
COLORS: dict[str, tuple[int, int, int]] = {
    "rest": (80, 200, 60),
    "grpc": (0, 150, 255),
    "grpc-stream": (230, 100, 210),
    "rest-ws": (40, 210, 210),
    "rest-h2": (255, 180, 60),
}
TITLES = {"rest": "REST (HTTP/1.1 + JSON)", "grpc": "gRPC unary", "grpc-stream": "gRPC stream",
          "rest-ws": "REST WebSocket stream", "rest-h2": "REST over HTTP/2"}  # fmt: skip
HOTKEYS = (
    "[1] REST  [2] gRPC  [3] both  [4] gRPC stream  [5] WebSocket  [6] HTTP/2  "
    "[s] save on/off  [r] reset  [q] quit"
)


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    def contains(self, other: Rect) -> bool:
        return (
            self.x <= other.x
            and self.y <= other.y
            and other.x + other.w <= self.x + self.w
            and other.y + other.h <= self.y + self.h
        )


@dataclass(frozen=True, slots=True)
class PanelView:
    protocol: str
    #: The 720×720 square the server analysed (any size; it is scaled), or None yet.
    image: Image | None
    boxes: tuple[Box, ...]
    stats: StatsSnapshot


@dataclass(frozen=True, slots=True)
class View:
    mode: str
    save: bool
    source: str
    frame_size: tuple[int, int] | None
    jpeg_quality: int
    model: str
    encode_ms: float | None
    display_fps: float
    panels: tuple[PanelView, ...]
    notice: str = ""
    link: str = "loopback"


@dataclass(frozen=True, slots=True)
class PanelLayout:
    slot: Rect
    image: Rect
    card: Rect


def layout(panels: int) -> list[PanelLayout]:
    """Where each panel goes: one centred, or two side by side."""
    top = HEADER_H + MARGIN
    if panels == 1:
        xs = [(CANVAS_W - SLOT_W) // 2]
    else:
        xs = [MARGIN + i * (SLOT_W + MARGIN) for i in range(panels)]
    result = []
    for x in xs:
        slot = Rect(x, top, SLOT_W, CANVAS_H - top - MARGIN)
        image = Rect(x + (SLOT_W - IMAGE_SIDE) // 2, top, IMAGE_SIDE, IMAGE_SIDE)
        card = Rect(x, top + IMAGE_SIDE + MARGIN, SLOT_W, CARD_H)
        result.append(PanelLayout(slot, image, card))
    return result


def text_width(text: str, scale: float = TEXT_SCALE) -> int:
    (width, _), _ = cv2.getTextSize(text, FONT, scale, 1)
    return int(width)


def fit_text(text: str, max_width: int, scale: float = TEXT_SCALE) -> str:
    """``text`` made ASCII (Hershey fonts have nothing else) and cut to ``max_width``."""
    text = text.replace("×", "x").encode("ascii", "replace").decode()
    if text_width(text, scale) <= max_width:
        return text
    while text and text_width(text + "...", scale) > max_width:
        text = text[:-1]
    return text + "..."


def _put(canvas: Image, text: str, x: int, y: int, width: int, color: tuple[int, int, int]) -> None:
    cv2.putText(canvas, fit_text(text, width), (x, y), FONT, TEXT_SCALE, color, 1, cv2.LINE_AA)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pcts(p: Percentiles | None) -> str:
    return (
        "p50 -  p95 -  p99 -" if p is None else f"p50 {p.p50:.1f}  p95 {p.p95:.1f}  p99 {p.p99:.1f}"
    )


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def render(view: View) -> Image:
    canvas = np.full((CANVAS_H, CANVAS_W, 3), BACKGROUND, np.uint8)
    _header(canvas, view)
    for panel, place in zip(view.panels, layout(len(view.panels)), strict=True):
        _panel(canvas, panel, place)
    return canvas


def _header(canvas: Image, view: View) -> None:
    size = "-" if view.frame_size is None else f"{view.frame_size[0]}x{view.frame_size[1]}"
    line = (
        f"facewire   mode {view.mode}   save {'ON' if view.save else 'off'}   "
        f"source {view.source}   frame {size}   JPEG q{view.jpeg_quality}   "
        f"model {view.model}   encode {_ms(view.encode_ms)} ms   display {view.display_fps:.0f} fps"
    )
    width = CANVAS_W - 2 * MARGIN
    _put(canvas, line, MARGIN, 22, width, TEXT)
    if view.save:
        cv2.rectangle(canvas, (0, 0), (CANVAS_W - 1, HEADER_H - 1), BAD, 2)
    hotkeys_w = text_width(HOTKEYS) + 20
    _put(canvas, HOTKEYS, MARGIN, 46, width, DIM)
    # What lies between client and services, right-aligned: loopback or a shaped link.
    link = fit_text(f"link {view.link}", width - hotkeys_w)
    link_w = text_width(link)
    _put(canvas, link, CANVAS_W - MARGIN - link_w, 46, link_w + 1, TEXT if view.link == "loopback"
         else WARN)  # fmt: skip
    if view.notice:
        room = width - hotkeys_w - link_w - 20
        _put(canvas, view.notice, MARGIN + hotkeys_w, 46, room, WARN)


def _panel(canvas: Image, panel: PanelView, place: PanelLayout) -> None:
    color = COLORS[panel.protocol]
    box = place.image
    if panel.image is None:
        cv2.rectangle(canvas, (box.x, box.y), (box.x + box.w, box.y + box.h), CARD, -1)
        _put(
            canvas, f"waiting: {panel.stats.state}", box.x + 12, box.y + box.h // 2, box.w - 24, DIM
        )
    else:
        shown = cv2.resize(panel.image, (box.w, box.h), interpolation=cv2.INTER_AREA)
        canvas[box.y : box.y + box.h, box.x : box.x + box.w] = shown
        scale = box.w / FRAME_SIZE
        for b in panel.boxes:
            top_left = (box.x + round(b.x * scale), box.y + round(b.y * scale))
            bottom_right = (
                box.x + round((b.x + b.width) * scale),
                box.y + round((b.y + b.height) * scale),
            )
            cv2.rectangle(canvas, top_left, bottom_right, color, 3)
    _card(canvas, panel, place.card, color)


def _card(canvas: Image, panel: PanelView, card: Rect, color: tuple[int, int, int]) -> None:
    s = panel.stats
    cv2.rectangle(canvas, (card.x, card.y), (card.x + card.w, card.y + card.h), CARD, -1)
    cv2.rectangle(canvas, (card.x, card.y), (card.x + 5, card.y + card.h), color, -1)
    x, width = card.x + 14, card.w - 24
    state_color = {"connected": TEXT, "unreachable": BAD, "error": WARN}.get(s.state, DIM)
    y = card.y + 18
    _put(canvas, TITLES[panel.protocol], x, y, width // 2, color)
    _put(canvas, s.state, x + width // 2, y, width // 2, state_color)
    lines = [
        f"end-to-end ms  last {_ms(s.last_ms)}   {_pcts(s.latency)}   (n={s.count})",
        f"server total ms  {_pcts(s.server_ms)}",
        f"transport overhead ms  {_pcts(s.overhead)}",
        f"{s.throughput:.1f} responses/s (last 5 s)   sent {_kb(s.bytes_sent)}   "
        f"received {_kb(s.bytes_received)} per frame",
    ]
    for text in lines:
        y += LINE_H
        _put(canvas, text, x, y, width, TEXT)
    y += LINE_H
    error_color = BAD if s.errors else DIM
    spark_label = (
        f"last {len(s.sparkline)}: {min(s.sparkline):.0f}-{max(s.sparkline):.0f} ms"
        if s.sparkline
        else ""
    )
    label_w = text_width(spark_label) + 12 if spark_label else 0
    _put(canvas, f"errors {s.errors}   {s.last_error}", x, y, width - label_w, error_color)
    _put(canvas, spark_label, x + width - label_w + 12, y, label_w, DIM)
    _sparkline(canvas, s.sparkline, Rect(x, y + 8, width, card.y + card.h - y - 14), color)


def _sparkline(
    canvas: Image, values: tuple[float, ...], area: Rect, color: tuple[int, int, int]
) -> None:
    if len(values) < 2 or area.h < 4:
        return
    data = np.asarray(values, float)
    low, high = float(data.min()), float(data.max())
    span = high - low or 1.0
    xs = area.x + np.linspace(0, area.w, len(data))
    ys = area.y + area.h - (data - low) / span * area.h
    points = np.stack([xs, ys], axis=1).round().astype(np.int32)
    cv2.polylines(canvas, [points], False, color, 1, cv2.LINE_AA)
