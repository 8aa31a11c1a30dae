"""The core error hierarchy mapped to gRPC status codes, once."""

from __future__ import annotations

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
