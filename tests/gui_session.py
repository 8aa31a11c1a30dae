"""The GUI driven key by key on a virtual screen, against services anywhere."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from client.gui import TITLE
from client.render import COLORS, layout
from tests.servers import ServiceProcess, wait_for
from tests.xdisplay import Screen

# `make screenshot` sets this to refresh the README's picture from the GUI test's run.
SCREENSHOT_OUT = os.environ.get("FACEWIRE_SCREENSHOT_OUT")


def colour_pixels(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(np.abs(image.astype(int) - colour) <= 3, axis=2).sum())


def panels_show_boxes(shot: np.ndarray, origin: tuple[int, int]) -> bool:
    """Mode 3: the left panel has a REST-coloured box, the right one a gRPC-coloured box,
    and both show a picture, not a placeholder."""
    ox, oy = origin
    for protocol, place in zip(("rest", "grpc"), layout(2), strict=True):
        r = place.image
        region = shot[oy + r.y : oy + r.y + r.h, ox + r.x : ox + r.x + r.w]
        if colour_pixels(region, COLORS[protocol]) < 300 or region.std() < 20:
            return False
        other = "grpc" if protocol == "rest" else "rest"
        if colour_pixels(region, COLORS[other]) > 0:
            return False
    return True


def panel_shows_boxes(shot: np.ndarray, origin: tuple[int, int], protocol: str) -> bool:
    """A one-panel mode: the picture with ``protocol``'s boxes, and its card's accent."""
    ox, oy = origin
    (place,) = layout(1)
    r, c = place.image, place.card
    region = shot[oy + r.y : oy + r.y + r.h, ox + r.x : ox + r.x + r.w]
    card = shot[oy + c.y : oy + c.y + c.h, ox + c.x : ox + c.x + c.w]
    return (colour_pixels(region, COLORS[protocol]) >= 300 and region.std() >= 20
            and colour_pixels(card, COLORS[protocol]) >= 100)  # fmt: skip


def rows(folder: Path) -> list[dict[str, str]]:
    path = folder / "records.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def drive_gui(screen: Screen, url: str, target: str, saves: Path, tmp_path: Path,
              h2_url: str | None = None) -> None:  # fmt: skip
    """The GUI against services at ``url`` and ``target``, key by key: 1, 2, 3 (with a
    screenshot of both panels), 4, s on, s off, 5 (the WebSocket's panel), 6 (REST over
    HTTP/2's panel, when ``h2_url`` names a REST service on Granian), r, q.
    ``saves`` is where the gRPC stream's saved rows land: rows must appear only while
    saving was on."""
    summary = tmp_path / "summary.csv"
    already = len(rows(saves))
    args = ("--source", "sample", "--rest-url", url, "--grpc-target", target,
            "--summary-csv", str(summary), "--log-every", "0.5")  # fmt: skip
    env = {**screen.env, **({"FACEWIRE_REST_H2_URL": h2_url} if h2_url else {})}
    with ServiceProcess("client", env, args) as gui:
        gui.wait_for_output("window open")
        window = screen.window(TITLE)
        screen.key(window, "1")
        gui.wait_for_output("rest: connected")

        screen.key(window, "2")
        gui.wait_for_output("mode -> grpc")
        gui.wait_for_output("grpc: connected")

        screen.key(window, "3")
        since = gui.wait_for_output("mode -> both").end()
        # Counted answers on both, past the warm-up, so the cards show real numbers.
        gui.wait_for_output(r"rest: n=[1-9]\d", since=since)
        gui.wait_for_output(r"grpc: n=[1-9]\d", since=since)
        origin = screen.origin(window)
        shot_path = tmp_path / "mode3.png"
        try:
            wait_for(
                lambda: panels_show_boxes(screen.screenshot(shot_path), origin),
                timeout=30,
                what="two panels with boxes in mode 3",
            )
        except TimeoutError as error:  # say what the screen and the GUI showed
            shot = screen.screenshot(shot_path)
            geometry = screen.geometry(window)
            raise AssertionError(
                f"{error}: the screen's last picture ({shot_path}) has {shot.std():.1f} "
                f"grey-level spread; the window: {geometry}; the GUI said:\n"
                f"{gui.output[-3000:]}"
            ) from None
        if SCREENSHOT_OUT:
            shutil.copyfile(shot_path, SCREENSHOT_OUT)

        screen.key(window, "4")
        gui.wait_for_output("mode -> stream")
        gui.wait_for_output("grpc-stream: connected")

        assert len(rows(saves)) == already  # nothing saved so far
        screen.key(window, "s")
        save_on = int(gui.wait_for_output(r"save -> on from frame (\d+)").group(1))
        wait_for(lambda: len(rows(saves)) >= already + 5, what="saved rows")
        screen.key(window, "s")
        save_off = int(gui.wait_for_output(r"save -> off from frame (\d+)").group(1))

        screen.key(window, "5")
        since = gui.wait_for_output("mode -> ws").end()
        gui.wait_for_output("rest-ws: connected", since=since)
        gui.wait_for_output(r"rest-ws: n=[1-9]\d", since=since)
        wait_for(
            lambda: panel_shows_boxes(screen.screenshot(tmp_path / "mode5.png"), origin, "rest-ws"),
            timeout=30,
            what="the WebSocket stream's panel with boxes and its card in mode 5",
        )
        if h2_url is not None:  # REST over HTTP/2: a REST service on Granian
            screen.key(window, "6")
            since = gui.wait_for_output("mode -> h2").end()
            gui.wait_for_output("rest-h2: connected", since=since)
            gui.wait_for_output(r"rest-h2: n=[1-9]\d", since=since)
            wait_for(
                lambda: panel_shows_boxes(screen.screenshot(tmp_path / "mode6.png"), origin,
                                          "rest-h2"),
                timeout=30,
                what="REST over HTTP/2's panel with boxes and its card in mode 6",
            )  # fmt: skip

        screen.key(window, "r")
        gui.wait_for_output("metrics reset")
        screen.key(window, "q")
        assert gui.process.wait(15) == 0, gui.output
    stored = rows(saves)[already:]
    assert stored, "saving produced no rows"
    assert all(save_on <= int(r["frame_id"]) < save_off for r in stored), (save_on, save_off)
    assert {r["protocol"] for r in stored} == {"grpc-stream"}
    assert summary.read_text().startswith("protocol,count,p50_ms")
