"""Caps on the streams one gRPC service keeps open: in all (``FACEWIRE_MAX_STREAMS``)
and per connection (``FACEWIRE_MAX_STREAMS_PER_CONNECTION``).

Each open stream holds a task, buffers and a slot in the client's flow control; without
a cap, a client opening thousands would exhaust the service, and without one per
connection, one client's idle streams could take every slot (until their idle timeout,
grpc_service.admission). Both stream methods (``DetectStream`` and the Open Inference
Protocol's ``ModelStreamInfer``) share them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf.message import Message

log = logging.getLogger("facewire.grpc")


class StreamSlots:
    """Open-stream counting on the service's event loop (so no lock)."""

    def __init__(self, limit: int, per_connection: int | None = None) -> None:
        self.limit = limit
        self.per_connection = per_connection or limit
        self.open = 0
        self.by_connection: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        """Hold a slot for the stream's life; aborts RESOURCE_EXHAUSTED when none is free."""
        peer = context.peer()
        mine = self.by_connection.get(peer, 0)
        if self.open >= self.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {self.limit} streams already open; retry shortly",
            )
        if mine >= self.per_connection:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.per_connection} streams already open on this connection",
            )
        self.open += 1
        self.by_connection[peer] = mine + 1
        try:
            yield
        finally:
            self.open -= 1
            left = self.by_connection[peer] - 1
            if left:
                self.by_connection[peer] = left
            else:
                del self.by_connection[peer]


async def send(context: grpc.aio.ServicerContext[Any, Any], answer: Message) -> bool:
    """Write one answer on a stream; False when the call is over (cancelled by the client).

    A client may cancel while an answer waits for room in its flow-control window (one
    that stopped reading, or a per-frame timeout). That is the client's choice, not a
    server error; had the servicer yielded the answer, grpc would log it as one, with a
    traceback, on every such cancel.
    """
    try:
        await context.write(answer)
    except Exception as exc:  # grpc's ExecuteBatchError (private): core refused the write
        # Only a call that is over fails a write (grpc may not have marked it cancelled
        # yet); nothing more can be sent on it either way.
        log.debug("stream ended by the client while an answer waited: %r", exc)
        return False
    return True
