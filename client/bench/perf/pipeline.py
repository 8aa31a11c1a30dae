"""The pipeline on its own, in process: the floor every ratio divides by, and the
opt-in decodes against the specified one.

The specified pipeline (the default, ``FACEWIRE_DECODE_MODE=colour``) decodes in full
colour, crops, shrinks to 300×300 with INTER_AREA and only then turns gray. The faster
decodes (``gray``, ``reduced``) can change an answer, so they are opt-in: here each is
timed against it, alternating on one thread, and its boxes are compared with the
specified ones on every fixture and on frames of the sample clip. (This replaced
target P8, retired: faster was met only by answers that differ on some frames.)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import cv2

from client.bench import FIXTURES
from client.bench.floor import time_per_frame
from client.bench.perf.targets import Plan, Results
from client.sources import SampleSource
from facewire.detector import FaceDetector
from facewire.messages import DetectionRequest, DetectionResult
from facewire.pipeline import Pipeline
from facewire.settings import DecodeMode, Settings

#: The opt-in decodes, each against the default (colour).
FAST_DECODES: tuple[DecodeMode, ...] = ("gray", "reduced")
#: "Close": every box edge within this many pixels of the specified pipeline's.
CLOSE_PX = 2


class Floor:
    """The in-process pipeline on one thread, OpenCV's threads off: the denominator."""

    def __init__(self, image: bytes) -> None:
        self.pipeline = Pipeline(Settings(), FaceDetector(), None)
        self.requests = [DetectionRequest(image)]

    def measure(self, seconds: float) -> list[float]:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return time_per_frame(self.pipeline, self.requests, seconds)
        finally:
            cv2.setNumThreads(threads)


def agreement_frames(clip_frames: int) -> list[bytes]:
    """Every fixture, and ``clip_frames`` frames of the sample clip (JPEG q90)."""
    frames = [path.read_bytes() for path in sorted(FIXTURES.glob("*.jpg"))]
    clip = SampleSource()
    step = max(1, 100 // max(clip_frames, 1))
    for n in range(0, step * clip_frames, step):
        frames.append(
            cv2.imencode(".jpg", clip.frame(n), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        )
    return frames


def edge_difference(a: DetectionResult, b: DetectionResult) -> int | None:
    """The largest box-edge difference in pixels; None when the number of boxes differs."""
    if len(a.boxes) != len(b.boxes):
        return None

    def edges(result: DetectionResult) -> list[tuple[int, int, int, int]]:
        return sorted((x.x, x.y, x.x + x.width, x.y + x.height) for x in result.boxes)

    pairs = zip(edges(a), edges(b), strict=True)
    return max((abs(p - q) for one, two in pairs for p, q in zip(one, two, strict=True)), default=0)


@dataclass(frozen=True)
class Agreement:
    """How a decode's boxes compare with the specified pipeline's over some frames."""

    frames: int
    identical: int  # the same boxes exactly
    close: int  # every edge within CLOSE_PX (identical ones included)
    count_differs: int  # a face found or lost
    worst_px: int  # the largest edge difference where the counts agree


def agreement(fast: Pipeline, specified: Pipeline, frames: list[bytes]) -> Agreement:
    differences = [
        edge_difference(fast.run(DetectionRequest(f)), specified.run(DetectionRequest(f)))
        for f in frames
    ]
    counted = [d for d in differences if d is not None]
    return Agreement(
        frames=len(frames),
        identical=sum(d == 0 for d in counted),
        close=sum(d <= CLOSE_PX for d in counted),
        count_differs=len(differences) - len(counted),
        worst_px=max(counted, default=0),
    )


def measure_pipeline(image: bytes, plan: Plan, results: Results) -> None:
    """The specified pipeline's time per frame on one thread, and each fast decode's
    time ÷ it (alternating blocks of frames) with its agreement."""
    detector = FaceDetector()
    specified = Pipeline(Settings(decode_mode="colour"), detector, None)
    request = DetectionRequest(image)
    frames = agreement_frames(plan.agreement_frames)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for mode in FAST_DECODES:
            fast = Pipeline(Settings(decode_mode=mode), detector, None)
            for pipeline in (fast, specified):
                pipeline.run(request)  # warm
            for _ in range(max(plan.rounds, 1) * 3):
                times = {}
                for name, pipeline in (("fast", fast), ("specified", specified)):
                    samples = []
                    for _ in range(plan.pipeline_frames):
                        start = time.perf_counter()
                        pipeline.run(request)
                        samples.append(time.perf_counter() - start)
                    times[name] = statistics.median(samples)
                results.add("decode time ÷ colour's", mode, times["fast"] / times["specified"])
                results.add("pipeline ms per frame, one thread", "colour",
                            1000 * times["specified"])  # fmt: skip
            results.notes[f"{mode} decode against colour"] = asdict(
                agreement(fast, specified, frames)
            )
    finally:
        cv2.setNumThreads(threads)
