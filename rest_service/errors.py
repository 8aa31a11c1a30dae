"""The core error hierarchy mapped to HTTP, once, as FastAPI exception handlers."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request

from facewire.budget import BudgetSpent
from facewire.errors import (
    FacewireError,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    NotFound,
    NotReady,
    Overloaded,
    StorageError,
)
from facewire.messages import Model
from facewire.metrics import Metrics
from rest_service.body import SlowUpload, UndrainedUpload

log = logging.getLogger("facewire.rest")
#: facewire's own endpoint; its requests are counted as protocol "rest".
DETECT_PATH = "/v1/detect"

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
    if isinstance(exc, BudgetSpent):  # refused before its body was read: both
        return {"Connection": "close", "Retry-After": "1"}
    if isinstance(exc, Overloaded):
        return {"Retry-After": "1"}
    return None


def error_document(path: str, message: str) -> dict[str, str]:
    """An error answer's JSON: the Open Inference Protocol's form under /v2
    (``{"error": ...}``), FastAPI's elsewhere (``{"detail": ...}``)."""
    return {"error" if path.startswith("/v2") else "detail": message}


def error_response(request: Request, exc: FacewireError) -> JSONResponse:
    status = http_status(exc)
    log.debug("%s %s -> %d %s", request.method, request.url.path, status, exc.message)
    return JSONResponse(
        error_document(request.url.path, exc.message),
        status_code=status,
        headers=connection_headers(exc),
    )


def validation_message(error: dict[str, Any]) -> str:
    """One of FastAPI's validation errors (a query or header value), in a line."""
    name = str(error["loc"][-1]) if error["loc"] else "request"
    if error["type"] == "bool_parsing":
        return f"{name} must be true or false, not {str(error['input'])[:20]!r}"
    return f"{name}: {error['msg']}"


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def on_facewire_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FacewireError)
        return error_response(request, exc)

    async def on_invalid_parameters(request: Request, exc: Exception) -> JSONResponse:
        # 400 like every other bad request here, not FastAPI's default 422; and counted,
        # as the endpoint would have (FastAPI refused it before the endpoint ran).
        assert isinstance(exc, RequestValidationError)
        refusal = InvalidInput("; ".join(validation_message(e) for e in exc.errors()))
        if request.url.path == DETECT_PATH:
            model = Model.label(request.query_params.get("model"))
            metrics.observe("rest", model, refusal.kind, time.perf_counter_ns())
        return error_response(request, refusal)

    async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        body = error_document(request.url.path, "internal server error")
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(FacewireError, on_facewire_error)
    app.add_exception_handler(RequestValidationError, on_invalid_parameters)
    app.add_exception_handler(Exception, on_unexpected_error)
