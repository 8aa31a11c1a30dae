"""The bare grpcio servers ``make perf`` compares the gRPC service with (P4 and P1).

``python -m grpc_service.bare aio PORT`` is a plain ``grpc.aio`` server with a plain
servicer, registered by the generated code (so grpc parses each request and serializes
each answer with protobuf, as for any servicer), answering at once with what facewire
sends for model ``echo`` (made once at start-up).

With ``--core`` it hands each request to the shared core instead (``DataPlane.detect``
on the same settings) and answers with its result: the least grpc.aio code that can
serve the pipeline. ``sync PORT --core`` is the other worker model grpcio offers, for
comparison only: a synchronous ``grpc.server`` whose handler threads (one per core) run
the pipeline themselves, with no event loop and no hop to a pipeline thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import grpc

from facewire.dataplane import DataPlane, cpu_count
from facewire.detector import FaceDetector
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.pipeline import Pipeline
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from facewire.wire.v1_proto import result_to_pb

ECHO = DetectionResult(frame_id="", model=Model.ECHO)


def _options(settings: Settings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.grpc_message_limit_bytes),
        ("grpc.max_send_message_length", settings.grpc_message_limit_bytes),
    ]


class BareServicer(pb_grpc.FaceDetectionServicer):
    """Answers at once; with ``plane``, runs the core instead."""

    def __init__(self, plane: DataPlane | None) -> None:
        self.plane = plane
        self.fixed = result_to_pb(ECHO, "grpc")

    async def Detect(  # noqa: N802 (the name is the RPC's)
        self, request: pb.DetectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DetectResponse:
        if self.plane is None:
            return self.fixed
        core = DetectionRequest(request.image, model=Model.parse(request.model))
        return result_to_pb(await self.plane.detect(core), "grpc")

    async def DetectStream(  # noqa: N802 (the name is the RPC's)
        self,
        request_iterator: AsyncIterator[pb.DetectRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DetectResponse]:
        async for request in request_iterator:
            yield await self.Detect(request, context)


async def serve_aio(port: int, settings: Settings, plane: DataPlane | None) -> None:
    server = grpc.aio.server(options=_options(settings))
    pb_grpc.add_FaceDetectionServicer_to_server(BareServicer(plane), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    if plane is not None:
        await asyncio.to_thread(plane.start)
    await server.start()
    await server.wait_for_termination()


class SyncCoreServicer(pb_grpc.FaceDetectionServicer):
    """Runs the pipeline on grpc's own handler thread."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def Detect(  # noqa: N802 (the name is the RPC's)
        self, request: pb.DetectRequest, context: grpc.ServicerContext
    ) -> pb.DetectResponse:
        core = DetectionRequest(request.image, model=Model.parse(request.model))
        return result_to_pb(self.pipeline.run(core), "grpc")

    def DetectStream(  # noqa: N802 (the name is the RPC's)
        self, request_iterator: Iterator[pb.DetectRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.DetectResponse]:
        for request in request_iterator:
            yield self.Detect(request, context)


def serve_sync(port: int, settings: Settings) -> None:
    """No DataPlane: the handler threads run the pipeline, each with its own cascade
    (loaded by its first request), one thread per core, and no split detection."""
    cv2.setNumThreads(settings.opencv_threads)
    pipeline = Pipeline(settings, FaceDetector.from_settings(settings), None)
    threads = ThreadPoolExecutor(settings.threads or cpu_count(), thread_name_prefix="grpc-handler")
    server = grpc.server(threads, options=_options(settings))
    pb_grpc.add_FaceDetectionServicer_to_server(SyncCoreServicer(pipeline), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    with contextlib.suppress(KeyboardInterrupt):
        server.wait_for_termination()


def main(argv: list[str]) -> int:
    if (
        len(argv) not in (2, 3)
        or argv[0] not in ("aio", "sync")
        or not argv[1].isdigit()
        or argv[2:] not in ([], ["--core"])
        or (argv[0] == "sync" and "--core" not in argv)
    ):
        print(
            "usage: python -m grpc_service.bare aio PORT [--core]\n"
            "       python -m grpc_service.bare sync PORT --core",
            file=sys.stderr,
        )
        return 2
    kind, port, settings = argv[0], int(argv[1]), Settings()
    if kind == "sync":
        serve_sync(port, settings)
        return 0
    plane = DataPlane.from_settings(settings, "grpc") if "--core" in argv else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_aio(port, settings, plane))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
