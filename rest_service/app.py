"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig

import facewire
from facewire import logs
from facewire.budget import UploadBudget
from facewire.dataplane import DataPlane
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.metrics import CONTENT_TYPE
from facewire.settings import Settings
from facewire.wire.v1_json import DetectResponse, ErrorResponse, result_to_json
from facewire.wire.v1_proto import request_to_core, result_to_pb
from rest_service import protobuf
from rest_service.auth import BearerAuth
from rest_service.body import uploaded_body, uploaded_image
from rest_service.errors import DETECT_PATH, install_error_handlers
from rest_service.oip import create_router
from rest_service.stream import STREAM_PATH, DetectionStream

log = logging.getLogger("facewire.rest")

MODEL_NAMES = sorted(m.value for m in Model)
CLOSE_TIMEOUT_S = 1.0

#: The body is read from the request itself (raw bytes, or multipart's ``file``), so it
#: is documented here rather than declared as a parameter (FastAPI would read it first).
_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image as the raw body, or as the multipart field `file`. "
        "JPEG, PNG, WebP or BMP, recognised from the bytes (Content-Type is not trusted), "
        "or, with `Content-Type: application/x-protobuf`, a `facewire.v1.DetectRequest` "
        "message (proto/facewire/v1/face_detection.proto), whose fields are the request "
        "(the query's values are then not used).",
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
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
#: The answer's other encoding (rest_service/protobuf.py has the negotiation).
_PROTOBUF_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The detection: JSON, or a `facewire.v1.DetectResponse` message when "
        "`Accept` prefers `application/x-protobuf` (or, with no `Accept`, the body was one)",
        "content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}},
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

#: The API docs' pages (Swagger UI and ReDoc) and their scripts, served by the service
#: itself: FastAPI's own pages load them from a CDN, so an air-gapped host shows blank
#: pages. The fastapi-offline package ships swagger-ui-bundle.js, swagger-ui.css,
#: redoc.standalone.js and a favicon.
DOCS_PATH, REDOC_PATH, DOCS_ASSETS_PATH = "/docs", "/redoc", "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"  # FastAPI's default, kept
# No online validator badge: Swagger UI would send the schema's URL to swagger.io.
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

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
        docs_url=None,  # the offline pages below instead
        redoc_url=None,
    )
    _serve_docs_offline(app)
    install_error_handlers(app, dataplane.metrics)
    uploads = UploadBudget(settings.upload_budget_bytes, settings.upload_budget_wait_s)
    if settings.auth_token is not None:
        app.add_middleware(BearerAuth, token=settings.auth_token.get_secret_value())

    @app.post(
        DETECT_PATH,
        response_model=DetectResponse,
        responses={**_ERRORS, **_PROTOBUF_ANSWER},
        openapi_extra=_IMAGE_BODY,
        summary="Detect faces in one image",
    )
    async def detect(
        request: Request,
        response: Response,
        save: SaveQuery = False,
        model: ModelQuery = Model.HAAR.value,
        frame_id: FrameIdQuery = None,
        x_frame_id: FrameIdHeader = None,
    ) -> DetectResponse | Response:
        sent = protobuf.body_type(request)
        if sent is not None:
            result = await detect_message(request)
        else:
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
        answer = protobuf.answer_type(request, sent)
        if answer is not None:
            return Response(result_to_pb(result, "rest").SerializeToString(), media_type=answer,
                            headers=protobuf.VARY)  # fmt: skip
        response.headers.update(protobuf.VARY)
        return result_to_json(result)

    async def detect_message(request: Request) -> DetectionResult:
        """A protobuf ``DetectRequest`` body: read within the same limits and budget as
        gRPC's message (the image and its envelope), then the request is its fields."""
        cap = settings.grpc_message_limit_bytes
        async with uploaded_body(request, cap, settings, uploads) as body:
            message = protobuf.parse_request(body)
            with dataplane.metrics.track("rest-protobuf", Model.label(message.model)):
                return await dataplane.detect(request_to_core(message, "rest"))

    app.add_api_websocket_route(STREAM_PATH, DetectionStream(settings, dataplane, uploads).serve)
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


def _serve_docs_offline(app: FastAPI) -> None:
    """FastAPI's /docs and /redoc pages, with every script, style and icon from
    ``DOCS_ASSETS_PATH`` (and no Google Fonts), so they render with no Internet."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(packages=[("fastapi_offline", "static")]), "docs")

    def root(request: Request) -> str:
        # Behind a proxy that strips a path prefix, the browser needs the prefix back.
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix, assets = root(request), f"{root(request)}{DOCS_ASSETS_PATH}"
        return get_swagger_ui_html(
            openapi_url=f"{prefix}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            oauth2_redirect_url=f"{prefix}{OAUTH2_REDIRECT_PATH}",
            swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        prefix, assets = root(request), f"{root(request)}{DOCS_ASSETS_PATH}"
        return get_redoc_html(
            openapi_url=f"{prefix}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )


def app_from_env() -> FastAPI:
    """Factory for worker processes (uvicorn's, Granian's), which each read the same
    environment, and log as the service does."""
    settings = Settings()
    logs.configure(settings)
    return create_app(settings, DataPlane.from_settings(settings, "rest"))
