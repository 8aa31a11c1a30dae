"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig

import facewire
from facewire.budget import UploadBudget
from facewire.dataplane import DataPlane
from facewire.messages import DetectionRequest, Model
from facewire.metrics import CONTENT_TYPE
from facewire.settings import Settings
from facewire.wire.v1_json import DetectResponse, ErrorResponse, result_to_json
from rest_service.auth import BearerAuth
from rest_service.body import uploaded_image
from rest_service.errors import DETECT_PATH, install_error_handlers
from rest_service.oip import create_router

log = logging.getLogger("facewire.rest")

MODEL_NAMES = sorted(m.value for m in Model)
CLOSE_TIMEOUT_S = 1.0

#: The body is read from the request itself (raw bytes, or multipart's ``file``), so it
#: is documented here rather than declared as a parameter (FastAPI would read it first).
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
# FastAPI's native OpenTelemetry asks the global providers on every request whether
# any is configured (about 10 µs); facewire exports Prometheus metrics itself.
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Not an image, corrupt, bad parameters"},
    413: {"model": ErrorResponse, "description": "Upload or pixel count over the limit"},
    503: {"model": ErrorResponse, "description": "Starting up or shutting down"},
    507: {"model": ErrorResponse, "description": "Saving failed (disk full, no permission)"},
}

SaveQuery = Annotated[bool, Query(description="Store the 720×720 frame and a CSV row.")]
ModelQuery = Annotated[
    str, Query(description="haar, decode or echo.", json_schema_extra={"enum": MODEL_NAMES})
]
FrameIdQuery = Annotated[
    str | None, Query(description="Echoed back and stored; also the X-Frame-Id header.")
]
FrameIdHeader = Annotated[str | None, Header(description="The frame_id, as a header.")]


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
    install_error_handlers(app, dataplane.metrics)
    uploads = UploadBudget(settings.upload_budget_bytes, settings.upload_budget_wait_s)
    if settings.auth_token is not None:
        app.add_middleware(BearerAuth, token=settings.auth_token.get_secret_value())

    @app.post(
        DETECT_PATH,
        response_model=DetectResponse,
        responses=_ERRORS,
        openapi_extra=_IMAGE_BODY,
        summary="Detect faces in one image",
    )
    async def detect(
        request: Request,
        save: SaveQuery = False,
        model: ModelQuery = Model.HAAR.value,
        frame_id: FrameIdQuery = None,
        x_frame_id: FrameIdHeader = None,
    ) -> DetectResponse:
        with dataplane.metrics.track("rest", Model.label(model)):
            async with uploaded_image(request, settings, uploads) as image:
                core = DetectionRequest(
                    image=image,
                    model=Model.parse(model),
                    save=save,
                    frame_id=frame_id or x_frame_id or "",
                    protocol="rest",
                )
                result = await dataplane.detect(core)
        log.debug(
            "detect frame_id=%r model=%s faces=%d total=%.2fms",
            result.frame_id,
            result.model.value,
            len(result.boxes),
            result.timings.total,
        )
        return result_to_json(result)

    app.include_router(create_router(settings, dataplane, uploads))

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
