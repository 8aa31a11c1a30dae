"""Serves ``POST /v1/detect`` ahead of FastAPI's routing.

FastAPI's exception and exit-stack middleware, its router and its per-route request
wrapper cost about 7 µs of an echo request's 30 in the app (docs/performance.md). The
endpoint is the same function either way; its FastAPI route stays for the OpenAPI
schema. Errors map through the one REST error mapping, and unexpected exceptions reach
the 500 handler, which sits outside every user middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from facewire.errors import FacewireError
from rest_service.errors import error_response

Endpoint = Callable[[Request], Awaitable[Response]]


class FastPath:
    """ASGI middleware: ``method path`` goes straight to ``endpoint``."""

    def __init__(self, app: ASGIApp, method: str, path: str, endpoint: Endpoint) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != self.method
            or scope["path"] != scope.get("root_path", "") + self.path
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except FacewireError as exc:
            response = error_response(request, exc)
        await response(scope, receive, send)
