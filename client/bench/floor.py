"""The floor: the same pipeline with no protocol at all, on one thread and on all cores."""

from __future__ import annotations

import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from facewire.detector import FaceDetector
from facewire.messages import DetectionRequest, Model
from facewire.pipeline import Pipeline
from facewire.settings import Settings


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_floor(frames: list[bytes], model: str, seconds: float = 2.0) -> dict[str, float]:
    """Single-thread time per frame (p50 and mean, ms) and all-cores throughput (frames/s)."""
    pipeline = Pipeline(Settings(), FaceDetector(), None)
    requests = [DetectionRequest(f, model=Model.parse(model)) for f in frames]
    for request in requests[:3]:
        pipeline.run(request)  # warm caches and this thread's cascade
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        pipeline.run(requests[i % len(requests)])
        times.append((time.perf_counter() - start) * 1000)
        i += 1
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
    done = sum(counts)
    return {
        "single_thread_p50_ms": statistics.median(times),
        "single_thread_mean_ms": statistics.fmean(times),
        "all_cores_throughput": done / elapsed,
        "cores": float(n),
        # The ideal: every core busy with nothing but the pipeline.
        "limit_throughput": n / (statistics.fmean(times) / 1000),
    }
