"""Runs requests on the pipeline threads; the one entry point both adapters call."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2

from facewire.detector import FaceDetector
from facewire.errors import FacewireError, NotReady
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.metrics import Metrics
from facewire.pipeline import Pipeline
from facewire.settings import Settings
from facewire.storage import FrameStore


class DataPlane:
    """Transport-free core: adapters convert their messages and await ``detect``.

    CPU work runs on a thread pool of its own (OpenCV releases the GIL), never on the
    event loop; ``echo`` has no CPU work and answers inline.
    """

    def __init__(self, pipeline: Pipeline, threads: int, metrics: Metrics | None = None) -> None:
        self.pipeline = pipeline
        self.threads = threads
        self.metrics = metrics or Metrics()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="facewire-pipeline")
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, protocol: str) -> DataPlane:
        """The usual assembly: detector, storage folder and pipeline from one settings object."""
        if settings.opencv_threads is not None:
            cv2.setNumThreads(settings.opencv_threads)
        detector = FaceDetector(
            settings.cascade_path,
            scale_factor=settings.scale_factor,
            min_neighbors=settings.min_neighbors,
            min_size=settings.min_size,
        )
        store = FrameStore(settings.storage_dir_for(protocol), settings.save_jpeg_quality)
        pipeline = Pipeline(settings, detector, store)
        return cls(pipeline, settings.threads or _cpu_count(), Metrics())

    @property
    def ready(self) -> bool:
        return self._ready

    def start(self) -> None:
        """Start every pipeline thread and load its cascade, then report ready."""
        barrier = threading.Barrier(self.threads)

        def warm() -> None:
            self.pipeline.warm_thread()
            barrier.wait(timeout=60)  # holding each thread forces the pool to make them all

        for future in [self._executor.submit(warm) for _ in range(self.threads)]:
            future.result()
        self._ready = True

    def close(self) -> None:
        """Stop taking work and wait for what is running."""
        self._ready = False
        self._executor.shutdown(wait=True)

    async def detect(self, request: DetectionRequest) -> DetectionResult:
        if not self._ready:
            raise NotReady("the service is not ready")
        start = time.perf_counter_ns()
        outcome = "internal_error"
        try:
            if request.model is Model.ECHO:
                result = self.pipeline.echo(request)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self._executor, self.pipeline.run, request, start
                )
            outcome = "ok"
            return result
        except FacewireError as exc:
            outcome = _snake_case(type(exc).__name__)
            raise
        finally:
            self.metrics.observe(request.protocol, request.model.value, outcome, start)
            if outcome == "ok":
                self.metrics.observe_stages(request.protocol, result.timings)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
