"""Runs requests on the pipeline threads; the one entry point both adapters call."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2

from facewire.detector import FaceDetector, Lend, lend_from
from facewire.errors import NotReady, Overloaded
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.metrics import Metrics
from facewire.pipeline import Pipeline
from facewire.settings import Settings
from facewire.storage import FrameStore, Quota

log = logging.getLogger("facewire")


class DataPlane:
    """Transport-free core: adapters convert their messages and await ``detect``.

    Every request runs on a thread pool of its own (OpenCV releases the GIL), never on
    the event loop, under the in-flight cap: ``echo`` too, though it has no image work,
    so that haar's latency minus echo's is the pipeline's work alone.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        threads: int,
        metrics: Metrics | None = None,
        *,
        split_detection: bool = False,
        max_inflight: int = 64,
    ) -> None:
        self.pipeline = pipeline
        self.threads = threads
        self.metrics = metrics or Metrics()
        self.max_inflight = max_inflight
        self.metrics.inflight_limit.set(max_inflight)
        self._inflight = 0  # touched on the event loop only: no lock
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="facewire-pipeline")
        # Helpers take pieces of a request's detection while pipeline threads are idle.
        self._helpers: ThreadPoolExecutor | None = None
        self._lend: Lend | None = None
        if split_detection and threads > 1:
            self._helpers = ThreadPoolExecutor(threads - 1, thread_name_prefix="facewire-helper")
            self._lend = lend_from(self._helpers)
        self._ready = False
        self._not_ready = "the service is starting"
        self.arrived = 0  # requests that reached detect(), refused ones too (event loop only)
        self._running = 0  # jobs on a pipeline thread right now
        self._idle = threading.Condition()

    @classmethod
    def from_settings(cls, settings: Settings, protocol: str) -> DataPlane:
        """The usual assembly: detector, storage folder and pipeline from one settings object."""
        cv2.setNumThreads(settings.opencv_threads)
        detector = FaceDetector.from_settings(settings)
        quota = Quota(settings.max_stored_images, settings.max_stored_bytes)
        store = FrameStore(settings.storage_dir_for(protocol), settings.save_jpeg_quality, quota)
        problem = store.writable_problem()
        if problem:
            log.warning("saving will fail: %s (detection still works)", problem)
        removed = store.remove_leftovers()
        if removed:
            log.warning("removed %d unfinished image(s) an earlier process left", len(removed))
        if quota.limited and not problem:
            usage = store.recount()
            log.info(
                "storage quota: %d images, %d bytes used of %s", usage.images, usage.bytes, quota
            )
        pipeline = Pipeline(settings, detector, store)
        return cls(
            pipeline,
            settings.threads or cpu_count(),
            split_detection=settings.split_detection,
            max_inflight=settings.max_inflight,
        )

    @property
    def ready(self) -> bool:
        """Whether requests are taken (started, not draining)."""
        return self._ready

    def readiness_problem(self) -> str | None:
        """Why the service should get no traffic now, in one line, or None: starting,
        draining, or (with saving on) a storage folder it cannot write. Probes the disk:
        call it off the event loop."""
        if not self._ready:
            return self._not_ready
        store = self.pipeline.store
        if self.pipeline.settings.save_enabled and store is not None:
            return store.writable_problem()
        return None

    @property
    def running(self) -> int:
        """Jobs on a pipeline thread right now."""
        with self._idle:
            return self._running

    def start(self) -> None:
        """Start every pipeline and helper thread and load its cascade, then report ready."""
        self._warm(self._executor, self.threads)
        if self._helpers is not None:
            self._warm(self._helpers, self.threads - 1)
        self._ready = True

    def _warm(self, pool: ThreadPoolExecutor, threads: int) -> None:
        barrier = threading.Barrier(threads)

        def warm() -> None:
            self.pipeline.warm_thread()
            barrier.wait(timeout=60)  # holding each thread forces the pool to make them all

        for future in [pool.submit(warm) for _ in range(threads)]:
            future.result()

    def drain(self) -> None:
        """Refuse new requests (NotReady: UNAVAILABLE, 503) while those held finish."""
        self._ready = False
        self._not_ready = "the service is shutting down; retry shortly"

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking work, drop what is queued, and wait up to ``timeout`` seconds for the
        jobs running now. False when some are still running (a caller about to exit
        should then leave with ``os._exit``, since pool threads cannot be interrupted)."""
        self.drain()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._helpers is not None:
            self._helpers.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            finished = self._idle.wait_for(lambda: self._running == 0, timeout)
        if not finished:
            log.warning("%d pipeline job(s) still running after %ss", self._running, timeout)
        return finished

    def _run(self, request: DetectionRequest, enqueued_ns: int) -> DetectionResult:
        with self._idle:
            self._running += 1
            spare = self.threads - self._running  # pipeline threads idle right now
        try:
            return self.pipeline.run(request, enqueued_ns, self._lend, spare)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    @property
    def inflight(self) -> int:
        """Requests held now, queued or running."""
        return self._inflight

    async def detect(self, request: DetectionRequest) -> DetectionResult:
        """Run one request. Call it on the service's event loop (the in-flight count is
        kept there)."""
        self.arrived += 1
        if not self._ready:
            raise NotReady(self._not_ready)
        if self._inflight >= self.max_inflight:
            raise Overloaded(
                f"server busy: {self.max_inflight} requests already in flight; retry shortly"
            )
        self._inflight += 1
        self.metrics.inflight.inc()
        try:
            loop = asyncio.get_running_loop()
            enqueued = time.perf_counter_ns()
            result = await loop.run_in_executor(self._executor, self._run, request, enqueued)
        finally:
            self._inflight -= 1
            self.metrics.inflight.dec()
        if request.model is not Model.ECHO:  # the stage histograms are the pipeline's
            self.metrics.observe_stages(request.protocol, result.timings)
        return result


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity), not merely those the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
