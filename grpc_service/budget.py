"""A memory budget for the gRPC messages in flight, over all connections.

grpc reads a call's whole message, in about two and a half copies, before our code
sees it, and the in-flight cap counts only calls that reached the data plane: 32
uploads of 8 MiB over 32 connections raised the service's peak by 620 MiB. Here a call
reserves the message limit before grpc reads its message (a server interceptor runs
between the call's headers and its message), and keeps the message's real size once
it has arrived, until the call ends. A unary call that finds no room within
``grpc_budget_wait_s`` ends RESOURCE_EXHAUSTED with its message unread (HTTP/2 flow
control has held its sender meanwhile); a stream asks for its next message only while
the budget has room, and holds each one's size until it is answered.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.message import Message

from facewire.settings import MiB

if TYPE_CHECKING:  # generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

#: Calls whose messages are small and bounded by grpc's metadata limits: not counted.
UNCOUNTED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class MessageBudget:
    """Bytes reserved for messages, on the service's event loop (so no lock)."""

    def __init__(self, budget: int, message_limit: int, wait_s: float) -> None:
        self.budget = budget
        self.message_limit = message_limit
        self.wait_s = wait_s
        self.reserved = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def reserve(self, wait_s: float | None) -> Lease | None:
        """A lease of one message limit; None if none is free within ``wait_s`` (None:
        wait as long as it takes). At least one call is always let in."""
        if not await self._wait_until(self._fits, wait_s):
            return None
        self.reserved += self.message_limit
        return Lease(self, self.message_limit)

    async def room(self) -> None:
        """Return once less than the whole budget is held (a stream's next read)."""
        await self._wait_until(lambda: self.reserved < self.budget, None)

    def hold(self, message: object) -> Lease:
        """A lease of a message already received, for its size."""
        size = message.ByteSize() if isinstance(message, Message) else 0
        self.reserved += size
        return Lease(self, size)

    def _fits(self) -> bool:
        return self.reserved == 0 or self.reserved + self.message_limit <= self.budget

    async def _wait_until(self, ready: Callable[[], bool], wait_s: float | None) -> bool:
        """Wait (woken by every give-back) until ``ready()``; False after ``wait_s``.
        Futures rather than an asyncio.Condition: a Condition's wait cancelled by a
        timeout or by the call's own cancellation can fail to re-take its lock."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait_s):
                while not ready():
                    waiter = loop.create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.remove(waiter)
        except TimeoutError:
            return False
        return True

    def _give_back(self, size: int) -> None:
        self.reserved -= size
        if size > 0:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def refusal(self) -> str:
        return (
            f"server busy: the gRPC message budget ({self.budget / MiB:g} MiB) is in use "
            f"by calls in flight; retry shortly"
        )


class Lease:
    """One call's share of the budget: the limit until its message arrives, then the
    message's size; given back once, when the call ends."""

    def __init__(self, budget: MessageBudget, size: int) -> None:
        self.budget = budget
        self.size = size

    def resize(self, message: object) -> None:
        if isinstance(message, Message):
            size = message.ByteSize()
            self.budget._give_back(self.size - size)
            self.size = size

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget._give_back(size)


class BudgetInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, budget: MessageBudget) -> None:
        self.budget = budget

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
        lease = await self.budget.reserve(self.budget.wait_s)
        if lease is None:
            return self._refused()
        behaviour = self._unary(handler.unary_unary, lease)
        # A call cancelled before its message arrives never runs the behaviour: the lease
        # goes back when grpc drops the handler, as the call ends.
        weakref.finalize(behaviour, lease.release)
        return handler._replace(unary_unary=behaviour)  # type: ignore[attr-defined,no-any-return]

    def _refused(self) -> Handler:
        """A handler that ends the call RESOURCE_EXHAUSTED without reading its message:
        served as a stream (the same frames on the wire), whose messages grpc reads only
        when asked; a unary handler would have grpc buffer the whole upload first."""
        refusal = self.budget.refusal()

        async def refuse(requests: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(refusal)

        return grpc.stream_stream_rpc_method_handler(refuse)

    @staticmethod
    def _unary(inner: Any, lease: Lease) -> Callable[..., Awaitable[Any]]:
        async def behaviour(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            lease.resize(request)
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


async def _budgeted(requests: AsyncIterator[object], budget: MessageBudget) -> AsyncIterator[Any]:
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
        lease = budget.hold(message)
        try:
            yield message
        finally:
            lease.release()
