"""The upload budget (facewire.budget) on gRPC, applied where each method is registered.

grpc reads a unary call's message before its handler runs, and reading it opens the
stream's HTTP/2 window to the whole message. So the unary methods are registered as
stream-unary handlers (the same frames on the wire: one message each way), which read
their one message themselves, once the budget has room for it:

- **A reservation by evidence.** A call reserves the largest message its connection has
  sent so far (its *standing*), or the message limit on a connection that has sent none.
  A camera's connection reserves a frame's size; a connection with no history, or one
  that sent a large message, reserves as a large upload, which may hold only part of the
  budget (facewire.budget). So large or unknown uploads cannot take the room ordinary
  frames need.
- **An arrival deadline.** Once admitted, the message must arrive within
  ``body_timeout_s`` (REST's deadline for a body): else DEADLINE_EXCEEDED, its room given
  back. A half-sent message cannot hold room for longer.
- Until admitted, a call's message stays unread: HTTP/2 flow control holds the sender
  at the stream window (server_options), and the budget bounds how many may wait.

A message larger than its connection's standing is still read (its size is then held,
and the connection's standing becomes it): a client that sends small messages and then
many large ones at once can overdraw the budget by one message per call it has in
flight, once. docs/reliability.md has the measured cost and bounds.

Bidirectional streams ask for their next message only while the budget has room, hold
each one's size until it is answered, and end (DEADLINE_EXCEEDED) after
``stream_idle_timeout_s`` without a message.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from facewire.budget import BudgetSpent, UploadBudget
from facewire.settings import MiB, Settings

Context = grpc.aio.ServicerContext[Any, Any]
Unary = Callable[[Any, Context], Awaitable[Any]]
Bidi = Callable[[AsyncIterator[Any], Context], Awaitable[None]]


class StreamIdle(Exception):
    """A stream sent no message within its idle timeout."""


class Admission:
    """Admits each call's upload into the service's budget (one per service process)."""

    def __init__(self, budget: UploadBudget, message_limit: int, arrival_s: float,
                 stream_idle_s: float, connections: int) -> None:  # fmt: skip
        self.budget = budget
        self.message_limit = message_limit
        self.arrival_s = arrival_s
        self.stream_idle_s = stream_idle_s
        self.connections = connections
        #: Each connection's largest message so far, by peer address (oldest first).
        self.standing: OrderedDict[str, int] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        """The service's admission, over a budget of its own. Calls that may wait for room
        hold up to a stream window unread each, so together at most the budget again."""
        window = settings.grpc_stream_window_bytes or 4 * MiB  # grpc's own: 4 MiB and up
        waiting = max(1, settings.upload_budget_bytes // window)
        budget = UploadBudget(settings.upload_budget_bytes, settings.upload_budget_wait_s, waiting)
        return cls(budget, settings.grpc_message_limit_bytes, settings.body_timeout_s,
                   settings.stream_idle_timeout_s, settings.max_connections)  # fmt: skip

    def unary(self, inner: Unary) -> Callable[[AsyncIterator[Any], Context], Awaitable[Any]]:
        """A stream-unary behaviour that reads the one message once there is room."""
        budget, standing = self.budget, self.standing

        async def behaviour(requests: AsyncIterator[Any], context: Context) -> Any:
            peer = context.peer()
            expected = standing.get(peer, self.message_limit)
            try:
                lease = await budget.reserve(expected)
            except BudgetSpent as exc:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
            try:
                try:
                    async with asyncio.timeout(self.arrival_s):
                        message = await context.read()
                except TimeoutError:
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the request message did not arrive within {self.arrival_s:g} s",
                    )
                if message is grpc.aio.EOF:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "the call ended with no request message"
                    )
                size = _size(message)
                lease.resize(size)
                self._note(peer, size, expected)
                return await inner(message, context)
            finally:
                lease.release()

        return behaviour

    def _note(self, peer: str, size: int, expected: int) -> None:
        if peer in self.standing:
            if size > expected:
                self.standing[peer] = size
            return
        self.standing[peer] = size
        if len(self.standing) > self.connections:  # a closed connection's entry goes
            self.standing.popitem(last=False)

    def stream(self, inner: Bidi) -> Bidi:
        async def behaviour(requests: AsyncIterator[Any], context: Context) -> None:
            try:
                await inner(self._budgeted(requests), context)
            except StreamIdle:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no message on the stream for {self.stream_idle_s:g} s",
                )

        return behaviour

    async def _budgeted(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """A stream's messages, the next one asked for only while the budget has room;
        each counts its real size until the next is asked for (the servicers answer one
        frame at a time). An idle stream reserves nothing: it would hold a message limit
        for as long as a client keeps it open."""
        iterator = aiter(requests)
        budget = self.budget
        while True:
            await budget.room()
            try:
                async with asyncio.timeout(self.stream_idle_s):
                    message = await anext(iterator, None)
            except TimeoutError:
                raise StreamIdle from None
            if message is None:
                return
            lease = budget.hold(_size(message))
            try:
                yield message
            finally:
                lease.release()


def _size(message: object) -> int:
    return message.ByteSize() if isinstance(message, Message) else 0  # Malformed: nothing kept
