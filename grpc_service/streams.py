"""A cap on the streams one gRPC service keeps open (``FACEWIRE_MAX_STREAMS``).

Each open stream holds a task, buffers and a slot in the client's flow control; without
a cap, a client opening thousands would exhaust the service. Both stream methods
(``DetectStream`` and the Open Inference Protocol's ``ModelStreamInfer``) share it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc


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
