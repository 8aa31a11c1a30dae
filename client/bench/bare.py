"""Bare servers: the same frameworks and settings as the services, without our adapters.

``python -m client.bench.bare rest PORT`` is a plain ASGI app under uvicorn with the REST
service's own uvicorn settings; ``... grpc PORT`` is a plain ``grpc.aio`` server with a
plain servicer, registered by the generated code. Each answers at once with what
facewire would send for model ``echo`` (made once at start-up), so the facewire client
parses the same reply from either: P4's reference.

With ``--core`` they hand each request to the shared core instead (``DataPlane.detect``
on the same settings) and answer with its result: the least code that can serve the
pipeline over each framework. The difference between a service and its bare ``--core``
twin is what our adapters cost; what both pay is the framework's and the machine's.

``... grpc-sync PORT --core`` is the other worker model grpcio offers, for comparison
only: a synchronous ``grpc.server`` whose handler threads (one per core) run the
pipeline themselves, with no event loop and no hop to a pipeline thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import cv2
import grpc

from facewire.dataplane import DataPlane, cpu_count
from facewire.detector import FaceDetector
from facewire.errors import FacewireError
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.pipeline import Pipeline
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from grpc_service.converters import result_to_pb
from rest_service.schemas import to_json_bytes
from rest_service.server import DrainingServer, bind_socket, uvicorn_config

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = Callable[[DetectionRequest], Awaitable[DetectionResult]]

ECHO = DetectionResult(frame_id="", model=Model.ECHO)


def rest_app(answer: Answer | None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    fixed = to_json_bytes(ECHO)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """Reads the whole body, then answers 200 with JSON."""
        if scope["type"] != "http":
            return  # lifespan: nothing to start
        body = bytearray()
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        reply, status = fixed, 200
        if answer is not None:
            query = dict(parse_qsl(scope["query_string"].decode()))
            try:
                request = DetectionRequest(bytes(body), model=Model.parse(query.get("model")))
                reply = to_json_bytes(await answer(request))
            except FacewireError as error:
                reply, status = json.dumps({"detail": error.message}).encode(), 400
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(reply)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    return app


class BareServicer(pb_grpc.FaceDetectionServicer):
    """A plain grpcio servicer, registered by the generated code (which parses each
    request and serializes each answer with protobuf), answering at once: P4's
    reference as the issue names it. With ``plane`` it runs the core instead."""

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


async def _grpc(port: int, settings: Settings, plane: DataPlane | None) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.read_limit_bytes),
            ("grpc.max_send_message_length", settings.read_limit_bytes),
        ]
    )
    pb_grpc.add_FaceDetectionServicer_to_server(BareServicer(plane), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    if plane is not None:
        await asyncio.to_thread(plane.start)
    await server.start()
    await server.wait_for_termination()


class SyncCoreServicer(pb_grpc.FaceDetectionServicer):
    """Runs the pipeline on grpc's own handler thread (``grpc-sync``)."""

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


def _grpc_sync(port: int, settings: Settings) -> None:
    """No DataPlane: the handler threads run the pipeline, each with its own cascade
    (loaded by its first request), one thread per core, and no split detection."""
    cv2.setNumThreads(settings.opencv_threads)
    pipeline = Pipeline(settings, FaceDetector.from_settings(settings), None)
    server = grpc.server(
        ThreadPoolExecutor(settings.threads or cpu_count(), thread_name_prefix="grpc-handler"),
        options=[
            ("grpc.max_receive_message_length", settings.read_limit_bytes),
            ("grpc.max_send_message_length", settings.read_limit_bytes),
        ],
    )
    pb_grpc.add_FaceDetectionServicer_to_server(SyncCoreServicer(pipeline), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    with contextlib.suppress(KeyboardInterrupt):
        server.wait_for_termination()


def main(argv: list[str]) -> int:
    if (
        len(argv) not in (2, 3)
        or argv[0] not in ("rest", "grpc", "grpc-sync")
        or argv[2:] not in ([], ["--core"])
        or (argv[0] == "grpc-sync" and "--core" not in argv)
    ):
        print(
            "usage: python -m client.bench.bare {rest,grpc} PORT [--core]\n"
            "       python -m client.bench.bare grpc-sync PORT --core",
            file=sys.stderr,
        )
        return 2
    kind, port = argv[0], int(argv[1])
    settings = Settings()
    if kind == "grpc-sync":
        _grpc_sync(port, settings)
        return 0
    plane = DataPlane.from_settings(settings, kind) if "--core" in argv else None
    if kind == "rest":
        if plane is not None:
            plane.start()
        answer = plane.detect if plane is not None else None
        sock = bind_socket("127.0.0.1", port)
        DrainingServer(uvicorn_config(settings, rest_app(answer))).run(sockets=[sock])
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_grpc(port, settings, plane))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
