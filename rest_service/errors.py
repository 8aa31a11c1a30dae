"""The core error hierarchy mapped to HTTP, once, as FastAPI exception handlers."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from facewire.errors import (
    FacewireError,
    Forbidden,
    LimitExceeded,
    NotFound,
    NotReady,
    Overloaded,
    StorageError,
)
from rest_service.body import SlowUpload, UndrainedUpload

log = logging.getLogger("facewire.rest")

# Most specific first: the first isinstance match wins.
_STATUS: tuple[tuple[type[FacewireError], int], ...] = (
    (LimitExceeded, 413),
    (SlowUpload, 408),
    (StorageError, 507),
    (NotReady, 503),
    (Overloaded, 503),
    (NotFound, 404),
    (Forbidden, 403),
    (FacewireError, 400),
)


def http_status(exc: FacewireError) -> int:
    return next(status for kind, status in _STATUS if isinstance(exc, kind))


def connection_headers(exc: FacewireError) -> dict[str, str] | None:
    """Headers an error answer needs beyond its body."""
    if isinstance(exc, (UndrainedUpload, SlowUpload)):
        # An upload we stopped reading leaves bytes on the wire: the connection is done.
        return {"Connection": "close"}
    if isinstance(exc, Overloaded):
        return {"Retry-After": "1"}
    return None


def error_response(request: Request, exc: FacewireError) -> JSONResponse:
    status = http_status(exc)
    log.debug("%s %s -> %d %s", request.method, request.url.path, status, exc.message)
    return JSONResponse(
        {"detail": exc.message}, status_code=status, headers=connection_headers(exc)
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_facewire_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FacewireError)
        return error_response(request, exc)

    async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_exception_handler(FacewireError, on_facewire_error)
    app.add_exception_handler(Exception, on_unexpected_error)
