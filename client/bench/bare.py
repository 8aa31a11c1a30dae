"""Bare servers: the same frameworks and settings as the services, without our adapters.

``python -m client.bench.bare rest PORT`` is a plain ASGI app under uvicorn with the REST
service's own uvicorn settings; ``... grpc PORT`` is a plain ``grpc.aio`` server with one
generic ``Detect`` handler on raw bytes. Each answers at once with the bytes facewire
would send for model ``echo`` (made once at start-up), so the facewire client parses the
same reply from either: P4's reference.

With ``--core`` they hand each request to the shared core instead (``DataPlane.detect``
on the same settings) and answer with its result: the least code that can serve the
pipeline over each framework. The difference between a service and its bare ``--core``
twin is what our adapters cost; what both pay is the framework's and the machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import grpc

from facewire.dataplane import DataPlane
from facewire.errors import FacewireError
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from grpc_service.converters import result_to_pb
from grpc_service.server import SERVICE_NAME
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


async def _grpc(port: int, settings: Settings, plane: DataPlane | None) -> None:
    fixed = result_to_pb(ECHO, "grpc").SerializeToString()

    async def detect(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if plane is None:
            return fixed
        message = pb.DetectRequest.FromString(raw)
        request = DetectionRequest(message.image, model=Model.parse(message.model))
        return result_to_pb(await plane.detect(request), "grpc").SerializeToString()

    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.read_limit_bytes),
            ("grpc.max_send_message_length", settings.read_limit_bytes),
        ]
    )
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(detect)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"Detect": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    if plane is not None:
        await asyncio.to_thread(plane.start)
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str]) -> int:
    if (
        len(argv) not in (2, 3)
        or argv[0] not in ("rest", "grpc")
        or argv[2:] not in ([], ["--core"])
    ):
        print("usage: python -m client.bench.bare {rest,grpc} PORT [--core]", file=sys.stderr)
        return 2
    kind, port = argv[0], int(argv[1])
    settings = Settings()
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
