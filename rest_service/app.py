"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig

import facewire
from facewire.dataplane import DataPlane
from facewire.errors import FacewireError, InvalidInput
from facewire.messages import DetectionRequest, Model
from facewire.metrics import CONTENT_TYPE
from facewire.settings import Settings
from rest_service.auth import BearerAuth
from rest_service.body import read_image
from rest_service.errors import install_error_handlers
from rest_service.fastpath import FastPath
from rest_service.oip import create_router
from rest_service.schemas import DetectResponse, ErrorResponse, to_json_bytes

log = logging.getLogger("facewire.rest")

MODEL_NAMES = frozenset(m.value for m in Model)
CLOSE_TIMEOUT_S = 1.0

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image as the raw body, or as the multipart field `file`. "
        "JPEG, PNG, WebP or BMP, recognised from the bytes (Content-Type is not trusted).",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}

_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "save",
        "in": "query",
        "description": "Store the 720×720 frame and a CSV row.",
        "schema": {"type": "boolean", "default": False},
    },
    {
        "name": "model",
        "in": "query",
        "description": "haar, decode or echo.",
        "schema": {"type": "string", "default": "haar", "enum": sorted(MODEL_NAMES)},
    },
    {
        "name": "frame_id",
        "in": "query",
        "description": "Echoed back and stored; also X-Frame-Id.",
        "schema": {"type": "string"},
    },
    {"name": "x-frame-id", "in": "header", "schema": {"type": "string"}},
]
# FastAPI's native OpenTelemetry asks the global providers on every request whether
# any is configured (about 10 µs); facewire exports Prometheus metrics itself.
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def parse_bool(name: str, value: str | None) -> bool:
    """A boolean query value, spelt as FastAPI would accept it."""
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise InvalidInput(f"{name} must be true or false, not {value[:20]!r}")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Not an image, corrupt, bad parameters"},
    413: {"model": ErrorResponse, "description": "Upload or pixel count over the limit"},
    503: {"model": ErrorResponse, "description": "Starting up or shutting down"},
    507: {"model": ErrorResponse, "description": "Saving failed (disk full, no permission)"},
}


def create_app(settings: Settings, dataplane: DataPlane) -> FastAPI:
    """The REST service around ``dataplane``, which the app starts and closes itself."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(dataplane.start)
        try:
            yield
        finally:
            # uvicorn has drained (or given up on) the requests; only CPU work may remain.
            await asyncio.to_thread(dataplane.close, CLOSE_TIMEOUT_S)

    app = FastAPI(
        title="facewire REST",
        version=facewire.__version__,
        description="Face detection over HTTP/1.1 + JSON; the gRPC service runs the same core.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
    )
    install_error_handlers(app)

    async def detect(request: Request) -> Response:
        # Parameters are read here rather than declared to FastAPI, whose per-request
        # parameter and response-model machinery cost more than the rest of this path
        # (docs/performance.md); _PARAMETERS documents them in the OpenAPI schema.
        start = time.perf_counter_ns()
        query = dict(
            parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        )
        model = query.get("model", Model.HAAR.value)
        label = model if model in MODEL_NAMES else "invalid"  # never client text as a label
        try:
            save = parse_bool("save", query.get("save"))
            image = await read_image(request, settings)
            core = DetectionRequest(
                image=image,
                model=Model.parse(model),
                save=save,
                frame_id=query.get("frame_id") or request.headers.get("x-frame-id") or "",
                protocol="rest",
            )
            result = await dataplane.detect(core)
        except FacewireError as exc:
            dataplane.metrics.observe("rest", label, exc.kind, start)
            raise
        dataplane.metrics.observe("rest", label, "ok", start)
        log.debug(
            "detect frame_id=%r model=%s faces=%d total=%.2fms",
            result.frame_id,
            result.model.value,
            len(result.boxes),
            result.timings.total,
        )
        return Response(to_json_bytes(result), media_type="application/json")

    app.post(
        "/v1/detect",
        response_model=DetectResponse,
        responses=_ERRORS,
        openapi_extra={**_IMAGE_BODY, "parameters": _PARAMETERS},
        summary="Detect faces in one image",
    )(detect)
    # The route documents the endpoint; FastPath serves it, ahead of FastAPI's routing.
    # The token check is added after it and so wraps it (the last added is outermost).
    app.add_middleware(FastPath, method="POST", path="/v1/detect", endpoint=detect)
    if settings.auth_token is not None:
        app.add_middleware(BearerAuth, token=settings.auth_token.get_secret_value())

    app.include_router(create_router(settings, dataplane))

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: started, not draining, and (with saving on) storage writable",
    )
    async def readyz() -> JSONResponse:
        problem = await asyncio.to_thread(dataplane.readiness_problem)
        if problem is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(dataplane.metrics.exposition(), media_type=CONTENT_TYPE)

    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes, which each read the same environment."""
    settings = Settings()
    return create_app(settings, DataPlane.from_settings(settings, "rest"))
