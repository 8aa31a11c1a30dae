"""Shared-token authentication for the gRPC service (``FACEWIRE_AUTH_TOKEN``).

A server interceptor: every call but the health service's must carry ``authorization:
Bearer <token>`` metadata, or it ends UNAUTHENTICATED before the servicer runs.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

#: The health service stays open, so that orchestrators can probe without the token.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
MESSAGE = "missing or wrong token: send authorization metadata 'Bearer <FACEWIRE_AUTH_TOKEN>'"

if TYPE_CHECKING:  # generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


async def _deny(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    # abort's error outlives the call in grpc.aio, and its traceback holds this frame:
    # drop the request (an upload, perhaps) first. See grpc_service.errors.refuse.
    del request
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        if hmac.compare_digest(str(metadata.get("authorization", "")), self.expected):
            return handler
        # The same kind of handler (unary or streaming), whose behaviour only refuses.
        if handler.request_streaming and handler.response_streaming:
            return handler._replace(stream_stream=_deny)  # type: ignore[attr-defined,no-any-return]
        if handler.request_streaming:
            return handler._replace(stream_unary=_deny)  # type: ignore[attr-defined,no-any-return]
        if handler.response_streaming:
            return handler._replace(unary_stream=_deny)  # type: ignore[attr-defined,no-any-return]
        return handler._replace(unary_unary=_deny)  # type: ignore[attr-defined,no-any-return]
