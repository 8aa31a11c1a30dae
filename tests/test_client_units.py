"""Client parts with no server: statistics, sources, the renderer, the summary."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from client import sources
from client.render import (
    CANVAS_H,
    CANVAS_W,
    CARD,
    COLORS,
    PanelView,
    Rect,
    View,
    fit_text,
    layout,
    render,
    text_width,
)
from client.sources import FolderSource, SampleSource, SourceError, VideoSource, open_source
from client.stats import WARMUP, WINDOW, ProtocolStats, StatsSnapshot, Summary
from client.summary import write_csv
from facewire.detector import FaceDetector
from facewire.messages import Box
from facewire.pipeline import centre_crop, detector_input

pytestmark = pytest.mark.unit


class FakeClock:
    """Seconds that tests advance by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats_with(clock: FakeClock) -> ProtocolStats:
    stats = ProtocolStats("rest", clock=clock)
    stats.activate()
    for _ in range(WARMUP):
        stats.record(999.0, 1.0, 10, 10)  # warm-up: shown, never counted
    return stats


# --- statistics ---------------------------------------------------------------------------


def test_percentiles_match_hand_computed_values() -> None:
    clock = FakeClock()
    stats = stats_with(clock)
    for ms in range(1, 101):  # 1..100 ms
        stats.record(float(ms), float(ms) - 2.0, 100, 20)
    snap = stats.snapshot()
    assert snap.count == 100
    assert snap.last_ms == 100.0
    assert snap.latency is not None
    # numpy's default (linear) percentiles of 1..100
    assert (snap.latency.p50, snap.latency.p95, snap.latency.p99) == (50.5, 95.05, 99.01)
    assert snap.overhead is not None
    assert snap.overhead.p50 == pytest.approx(2.0)
    assert (snap.bytes_sent, snap.bytes_received) == (100, 20)


def test_warmup_responses_are_shown_but_not_counted() -> None:
    stats = stats_with(FakeClock())
    snap = stats.snapshot()
    assert snap.count == 0
    assert snap.latency is None
    assert snap.last_ms == 999.0
    assert snap.state == "connected"


def test_sliding_window_keeps_the_last_300() -> None:
    stats = stats_with(FakeClock())
    for _ in range(WINDOW):
        stats.record(1000.0, 1.0, 1, 1)
    for _ in range(WINDOW):
        stats.record(10.0, 1.0, 1, 1)  # pushes every 1000 ms sample out
    snap = stats.snapshot()
    assert snap.latency is not None
    assert snap.latency.p99 == 10.0
    assert snap.count == 2 * WINDOW  # the session count is not windowed
    assert stats.summary().p99 == 1000.0  # ...and neither is the summary


def test_throughput_is_responses_in_the_last_five_seconds() -> None:
    clock = FakeClock()
    stats = stats_with(clock)
    for _ in range(50):  # 10 responses/s for 5 s
        clock.now += 0.1
        stats.record(20.0, 18.0, 1, 1)
    assert stats.snapshot().throughput == pytest.approx(10.0)
    clock.now += 10  # then silence: nothing in the last 5 s
    assert stats.snapshot().throughput == 0.0


def test_throughput_early_on_divides_by_the_time_so_far() -> None:
    clock = FakeClock()
    stats = stats_with(clock)
    clock.now += 1.0
    for _ in range(20):
        stats.record(20.0, 18.0, 1, 1)
    assert stats.snapshot().throughput == pytest.approx(20.0)


def test_reset_forgets_measurements_and_errors() -> None:
    stats = stats_with(FakeClock())
    stats.record(5.0, 4.0, 1, 1)
    stats.record_error("unreachable", "connection refused")
    stats.reset()
    snap = stats.snapshot()
    assert (snap.count, snap.errors, snap.last_error, snap.latency) == (0, 0, "", None)
    assert snap.state == "unreachable"  # the connection state is not a measurement
    for _ in range(WARMUP + 1):
        stats.record(5.0, 4.0, 1, 1)
    assert stats.snapshot().count == 1  # warm-up again after a reset


def test_summary_throughput_counts_only_active_time() -> None:
    clock = FakeClock()
    stats = stats_with(clock)
    for _ in range(40):
        clock.now += 0.05
        stats.record(20.0, 18.0, 1, 1)
    stats.deactivate()
    clock.now += 100  # idle time does not dilute the summary
    summary = stats.summary()
    assert summary.count == 40
    assert summary.throughput == pytest.approx(20.0)


# --- sources ------------------------------------------------------------------------------


def test_sample_is_deterministic_and_always_shows_two_faces() -> None:
    sample = SampleSource()
    assert np.array_equal(sample.frame(7), SampleSource().frame(7))
    assert not np.array_equal(sample.frame(0), sample.frame(40))  # the faces move
    assert np.array_equal(sample.frame(3), sample.frame(3 + sources.SAMPLE_LOOP_FRAMES))
    detector = FaceDetector()
    for n in range(0, sources.SAMPLE_LOOP_FRAMES, 25):
        frame, _ = centre_crop(sample.frame(n))
        assert len(detector.detect(detector_input(frame))) == 2, n
    assert sample.read().shape == (720, 1280, 3)


@pytest.mark.parametrize(("width", "height"), [(320, 180), (640, 480), (720, 1280), (1920, 1080)])
def test_sample_at_any_size_keeps_its_faces(width: int, height: int) -> None:
    frame = SampleSource(width, height).frame(10)
    assert frame.shape == (height, width, 3)
    if min(width, height) >= 480:  # below that the faces are under the cascade's minSize
        square, _ = centre_crop(frame)
        assert len(FaceDetector().detect(detector_input(square))) == 2


def test_folder_source_loops_in_name_order_and_skips_unreadable(tmp_path: Path) -> None:
    for name, value in (("b.png", 200), ("a.jpg", 100)):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), value, np.uint8))
    (tmp_path / "c.bmp").write_bytes(b"not a bmp")
    (tmp_path / "notes.txt").write_text("ignored")
    folder = FolderSource(tmp_path)
    means = [round(float(folder.read().mean()), -1) for _ in range(4)]
    assert means == [100, 200, 100, 200]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no JPEG"):
        FolderSource(tmp_path)


def test_video_source_reads_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    for value in (0, 255, 0):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    video = VideoSource(path)
    assert video.fps == 15
    means = [float(video.read().mean()) for _ in range(5)]
    assert [m > 128 for m in means] == [False, True, False, False, True]  # looped
    video.close()


def test_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"nope")
    with pytest.raises(SourceError, match="not a readable video"):
        VideoSource(path)


def test_missing_camera_and_auto_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="camera 97"):
        open_source("97")
    monkeypatch.setattr(sources, "AUTO_CAMERA", 97)  # a camera index nobody has
    source, notice = open_source("auto")
    assert isinstance(source, SampleSource)
    assert "no camera" in notice


def test_unknown_source() -> None:
    with pytest.raises(SourceError, match="no such source"):
        open_source("/does/not/exist")


# --- renderer -----------------------------------------------------------------------------


def _snapshot(**kwargs: object) -> StatsSnapshot:
    return StatsSnapshot(**kwargs)  # type: ignore[arg-type]


def _view(protocols: tuple[str, ...], image: np.ndarray | None, **kwargs: object) -> View:
    panels = tuple(
        PanelView(p, image, (Box(100, 100, 200, 200),), _snapshot(state="connected", **kwargs))
        for p in protocols
    )
    return View("both", True, "sample", (1280, 720), 90, "haar", 2.5, 30.0, panels, "notice")


@pytest.mark.parametrize("panels", [1, 2])
def test_layout_fits_a_1366x768_screen_without_overlap(panels: int) -> None:
    title_bar = 40  # room for a window manager's decorations
    assert CANVAS_W <= 1366
    assert CANVAS_H + title_bar <= 768
    canvas = Rect(0, 0, CANVAS_W, CANVAS_H)
    places = layout(panels)
    assert len(places) == panels
    for place in places:
        assert canvas.contains(place.slot)
        assert place.slot.contains(place.image)
        assert place.slot.contains(place.card)
        assert place.image.y + place.image.h <= place.card.y  # card under the image
    if panels == 2:
        left, right = places
        assert left.slot.x + left.slot.w <= right.slot.x


def test_fit_text_cuts_to_width_and_makes_ascii() -> None:
    assert fit_text("short", 500) == "short"
    long = "connection refused " * 20
    cut = fit_text(long, 300)
    assert cut.endswith("...")
    assert text_width(cut) <= 300
    assert fit_text("1280×720", 500) == "1280x720"


def test_render_draws_each_protocol_in_its_colour_inside_its_panel() -> None:
    frame = np.full((720, 720, 3), 128, np.uint8)
    canvas = render(_view(("rest", "grpc"), frame))
    assert canvas.shape == (CANVAS_H, CANVAS_W, 3)
    for protocol, place in zip(("rest", "grpc"), layout(2), strict=True):
        region = canvas[place.image.y : place.image.y + place.image.h,
                        place.image.x : place.image.x + place.image.w]  # fmt: skip
        own = np.all(region == COLORS[protocol], axis=2).sum()
        other = "grpc" if protocol == "rest" else "rest"
        assert own > 500  # a 3 px box outline
        assert np.all(region == COLORS[other], axis=2).sum() == 0


def test_long_texts_stay_inside_their_cards() -> None:
    frame = np.zeros((720, 720, 3), np.uint8)
    view = _view(
        ("rest", "grpc"),
        frame,
        errors=123456,
        last_error="HTTP 400: " + "x" * 500,
        sparkline=tuple(float(i % 17) for i in range(120)),
    )
    canvas = render(view)
    background = canvas[-1, -1].copy()
    left, right = layout(2)
    gutter = canvas[left.card.y : left.card.y + left.card.h,
                    left.slot.x + left.slot.w + 1 : right.slot.x - 1]  # fmt: skip
    assert np.all(gutter == background)  # nothing spilled between the cards


def test_waiting_panel_without_an_image() -> None:
    canvas = render(_view(("grpc-stream",), None))
    (place,) = layout(1)
    region = canvas[
        place.image.y : place.image.y + place.image.h, place.image.x : place.image.x + 10
    ]
    assert np.all(region == CARD)  # a plain placeholder, no stale picture


def test_summary_csv(tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.csv"
    write_csv(
        [Summary("rest", 10, 1.0, 2.0, 3.0, 4.5, 1), Summary("grpc", 0, None, None, None, 0, 2)],
        path,
        link="lte (12/12 Mbit/s, 70 ms; wirefilter)",
    )
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {
        "protocol": "rest", "count": "10", "p50_ms": "1.00", "p95_ms": "2.00",
        "p99_ms": "3.00", "throughput_rps": "4.50", "errors": "1",
        "link": "lte (12/12 Mbit/s, 70 ms; wirefilter)",
    }  # fmt: skip
    assert rows[1]["p50_ms"] == ""


def test_every_mode_change_rearms_the_warmup_of_active_protocols() -> None:
    stats = stats_with(FakeClock())
    stats.record(5.0, 4.0, 1, 1)
    assert stats.snapshot().count == 1
    stats.activate()  # a mode change that keeps this protocol on
    for _ in range(WARMUP):
        stats.record(50.0, 4.0, 1, 1)
    assert stats.snapshot().count == 1  # the answers right after the change were not counted


def test_switching_a_protocol_back_on_does_not_spike_its_throughput() -> None:
    clock = FakeClock()
    stats = stats_with(clock)
    for _ in range(100):  # 25 answers/s for 4 s
        clock.now += 0.04
        stats.record(20.0, 18.0, 1, 1)
    stats.deactivate()
    stats.activate()  # 1 -> 2 -> 1 within five seconds
    clock.now += 0.1
    assert stats.snapshot().throughput == 0.0  # nothing answered since it came back


def test_the_header_names_the_link() -> None:
    """Right-aligned on the header's second line, in the warning colour when shaped."""
    from dataclasses import replace

    from client.render import WARN

    base = _view(("rest",), None)
    shaped = render(replace(base, link="lte (12/12 Mbit/s, 70 ms; wirefilter)"))
    plain = render(base)
    corner = (slice(32, 52), slice(CANVAS_W - 300, CANVAS_W - 8))
    assert not np.array_equal(shaped[corner], plain[corner])
    assert np.any(np.all(shaped[corner] == WARN, axis=-1))
