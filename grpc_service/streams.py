"""A cap on the streams one gRPC service keeps open (``FACEWIRE_MAX_STREAMS``).

Each open stream holds a task, buffers and a slot in the client's flow control; without
a cap, a client opening thousands would exhaust the service. Both stream methods
(``DetectStream`` and the Open Inference Protocol's ``ModelStreamInfer``) share it.
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

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @asynccontextmanager
    async def slot(self, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        """Hold a slot for the stream's life; aborts RESOURCE_EXHAUSTED when none is free."""
        if self.open >= self.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {self.limit} streams already open; retry shortly",
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


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
