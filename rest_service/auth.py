"""Shared-token authentication for the REST service (``FACEWIRE_AUTH_TOKEN``).

A plain ASGI middleware: every request but the health checks must carry
``Authorization: Bearer <token>``, or it gets 401 before any route or body is touched.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from rest_service.errors import error_document

#: Liveness and readiness stay open, so that orchestrators can probe without the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
MESSAGE = "missing or wrong token: send Authorization: Bearer <FACEWIRE_AUTH_TOKEN>"


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_document(scope["path"], MESSAGE)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        # A WebSocket handshake is refused with the same answer (ASGI's WebSocket Denial
        # Response, which uvicorn supports): a 401, not a bare close.
        answer = "websocket.http.response" if scope["type"] == "websocket" else "http.response"
        await send({"type": f"{answer}.start", "status": 401, "headers": headers})
        await send({"type": f"{answer}.body", "body": body})
