"""The core error hierarchy mapped to gRPC status codes, once."""

from __future__ import annotations

from typing import Any

import grpc

from facewire.errors import (
    FacewireError,
    Forbidden,
    LimitExceeded,
    NotFound,
    NotReady,
    Overloaded,
    StorageError,
)

# Most specific first: the first isinstance match wins.
_STATUS: tuple[tuple[type[FacewireError], grpc.StatusCode], ...] = (
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # Disk full or not writable: nothing the client can change; an operator must act.
    (StorageError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (FacewireError, grpc.StatusCode.INVALID_ARGUMENT),
)


def grpc_status(exc: FacewireError) -> grpc.StatusCode:
    return next(code for kind, code in _STATUS if isinstance(exc, kind))


def refuse(context: grpc.aio.ServicerContext[Any, Any], exc: FacewireError) -> None:
    """End the call with ``exc``'s status and message; the handler then returns an empty
    answer, which grpc does not send with an error status.

    Not ``context.abort``: grpc.aio keeps the AbortError it raises on the call, and the
    error's traceback (chained to ``exc``'s) holds the handler's frames and so the
    request, megabytes for an oversized upload, until Python's cycle collector runs.
    Under a burst of refused uploads that grew a process by hundreds of MiB.
    """
    context.set_code(grpc_status(exc))
    context.set_details(exc.message)
