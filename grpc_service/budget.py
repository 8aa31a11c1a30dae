"""The upload budget (facewire.budget) on gRPC: a server interceptor runs between a
call's headers and its message, so a unary call reserves the message limit there,
before grpc reads anything, and keeps the message's real size once it has arrived,
until the call ends. One that finds no room ends RESOURCE_EXHAUSTED with its message
unread (HTTP/2 flow control has held its sender meanwhile: see server_options); a
stream asks for its next message only while the budget has room, and holds each one's
size until it is answered.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.message import Message

from facewire.budget import BudgetSpent, Lease, UploadBudget

if TYPE_CHECKING:  # generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

#: Calls whose messages are small and bounded by grpc's metadata limits: not counted.
UNCOUNTED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class BudgetInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, budget: UploadBudget, message_limit: int) -> None:
        self.budget = budget
        self.message_limit = message_limit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(UNCOUNTED_PREFIXES):
            return handler
        if handler.request_streaming and handler.response_streaming:
            return handler._replace(stream_stream=self._stream(handler.stream_stream))  # type: ignore[attr-defined,no-any-return]
        if handler.request_streaming or handler.response_streaming:
            return handler  # no such methods here: registration serves unary and bidi only
        try:
            lease = await self.budget.reserve(self.message_limit)
        except BudgetSpent as exc:
            return self._refused(exc.message)
        behaviour = self._unary(handler.unary_unary, lease)
        # A call cancelled before its message arrives never runs the behaviour: the lease
        # goes back when grpc drops the handler, as the call ends.
        weakref.finalize(behaviour, lease.release)
        return handler._replace(unary_unary=behaviour)  # type: ignore[attr-defined,no-any-return]

    @staticmethod
    def _refused(refusal: str) -> Handler:
        """A handler that ends the call RESOURCE_EXHAUSTED without reading its message:
        served as a stream (the same frames on the wire), whose messages grpc reads only
        when asked; a unary handler would have grpc buffer the whole upload first."""

        async def refuse(requests: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(refusal)

        return grpc.stream_stream_rpc_method_handler(refuse)

    @staticmethod
    def _unary(inner: Any, lease: Lease) -> Callable[..., Awaitable[Any]]:
        async def behaviour(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            lease.resize(_size(request))
            try:
                return await inner(request, context)
            finally:
                lease.release()

        return behaviour

    def _stream(self, inner: Any) -> Callable[..., Awaitable[Any]]:
        budget = self.budget

        async def behaviour(
            requests: AsyncIterator[object], context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            return await inner(_budgeted(requests, budget), context)

        return behaviour


def _size(message: object) -> int:
    return message.ByteSize() if isinstance(message, Message) else 0  # Malformed: nothing kept


async def _budgeted(requests: AsyncIterator[object], budget: UploadBudget) -> AsyncIterator[Any]:
    """A stream's messages, the next one asked for only while the budget has room; each
    counts its real size until the next is asked for (the servicer answers one frame at
    a time). An idle stream reserves nothing: it would hold a message limit for as long
    as a client keeps it open."""
    iterator = aiter(requests)
    while True:
        await budget.room()
        message = await anext(iterator, None)
        if message is None:
            return
        lease = budget.hold(_size(message))
        try:
            yield message
        finally:
            lease.release()
