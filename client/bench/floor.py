"""The floor: the same pipeline with no protocol at all, on one thread and on all cores."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2

from facewire.dataplane import cpu_count as cores
from facewire.detector import FaceDetector, Lend, lend_from
from facewire.messages import DetectionRequest, Model
from facewire.pipeline import Pipeline
from facewire.settings import Settings


def time_per_frame(
    pipeline: Pipeline,
    requests: list[DetectionRequest],
    seconds: float,
    lend: Lend | None = None,
    spare: int = 0,
) -> list[float]:
    for request in requests[:3]:
        pipeline.run(request, None, lend, spare)  # warm caches and the threads' cascades
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        pipeline.run(requests[i % len(requests)], None, lend, spare)
        times.append((time.perf_counter() - start) * 1000)
        i += 1
    return times


def measure_floor(frames: list[bytes], model: str, seconds: float = 2.0) -> dict[str, float]:
    """The pipeline with no protocol, set up as the services set it up (``Settings()``).

    - single thread: one core, OpenCV's own threads off; the basis of efficiency.
    - lone request: one caller, its detection shared with idle cores as the services
      share it (``split_detection``), or spread by OpenCV when that is configured.
    - all cores: one pipeline thread per core, OpenCV's own threads off.
    """
    settings = Settings()
    pipeline = Pipeline(settings, FaceDetector(), None)
    requests = [DetectionRequest(f, model=Model.parse(model)) for f in frames]
    opencv_threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(settings.opencv_threads)
        with ThreadPoolExecutor(max(cores() - 1, 1), thread_name_prefix="floor-helper") as pool:
            lend = lend_from(pool) if settings.split_detection else None
            spare = cores() - 1 if lend is not None else 0
            lone = time_per_frame(pipeline, requests, seconds / 2, lend, spare)
        cv2.setNumThreads(1)
        times = time_per_frame(pipeline, requests, seconds)
        throughput = _all_cores(pipeline, requests, seconds)
    finally:
        cv2.setNumThreads(opencv_threads)
    return {
        "single_thread_p50_ms": statistics.median(times),
        "single_thread_mean_ms": statistics.fmean(times),
        "lone_request_p50_ms": statistics.median(lone),
        "all_cores_throughput": throughput,
        "cores": float(cores()),
        # The ideal: every core busy with nothing but the pipeline.
        "limit_throughput": limit_throughput(times),
    }


def limit_throughput(single_thread_ms: list[float]) -> float:
    """The ideal throughput: every core running the pipeline and nothing else."""
    return cores() / (statistics.fmean(single_thread_ms) / 1000)


def _all_cores(pipeline: Pipeline, requests: list[DetectionRequest], seconds: float) -> float:
    n = cores()
    counts = [0] * n
    barrier = threading.Barrier(n)

    def busy(slot: int) -> None:
        pipeline.warm_thread()
        barrier.wait()
        stop = time.perf_counter() + seconds
        k = slot
        while time.perf_counter() < stop:
            pipeline.run(requests[k % len(requests)])
            counts[slot] += 1
            k += n

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(busy, range(n)))
    elapsed = time.perf_counter() - started
    return sum(counts) / elapsed
