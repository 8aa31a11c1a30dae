"""Bare servers for P4: the same frameworks, the same settings, no facewire at all.

``python -m client.bench.bare rest PORT`` is a plain ASGI app under uvicorn with the REST
service's own uvicorn settings: it reads the body and answers at once. ``... grpc PORT``
is a plain ``grpc.aio`` server whose ``Detect`` answers at once. Both answer with the
bytes facewire itself would send for model ``echo``, made once at start-up, so that the
facewire client parses the same reply from either.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import grpc

from facewire.messages import DetectionResult, Model
from facewire.settings import Settings
from grpc_service.converters import result_to_pb
from grpc_service.server import SERVICE_NAME
from rest_service.schemas import to_json_bytes
from rest_service.server import DrainingServer, bind_socket, uvicorn_config

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ECHO = DetectionResult(frame_id="", model=Model.ECHO)


async def bare_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then answers 200 with a fixed JSON body."""
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(REST_REPLY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": REST_REPLY})


REST_REPLY = to_json_bytes(ECHO)
GRPC_REPLY = result_to_pb(ECHO, "grpc").SerializeToString()


async def _grpc(port: int, settings: Settings) -> None:
    async def detect(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return GRPC_REPLY

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
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str]) -> int:
    kind, port = argv[0], int(argv[1])
    settings = Settings()
    if kind == "rest":
        sock = bind_socket("127.0.0.1", port)
        DrainingServer(uvicorn_config(settings, bare_asgi)).run(sockets=[sock])
    elif kind == "grpc":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_grpc(port, settings))
    else:
        print("usage: python -m client.bench.bare {rest,grpc} PORT", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
