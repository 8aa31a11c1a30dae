"""The Open Inference Protocol (KServe v2) over HTTP: ``/v2/...`` next to ``/v1/detect``.

Requests are JSON, or JSON followed by binary tensor data (Triton's binary tensor data
extension: the ``Inference-Header-Content-Length`` header gives the JSON's length, and
each binary input says its ``binary_data_size``). In JSON, a BYTES element is a base64
string. Answers are JSON, or JSON plus binary data for the outputs that ask for it
(``binary_data`` on an output, or ``binary_data_output`` on the request). Errors are
``{"error": "..."}`` with 400, 404 or 413 (503 while starting or stopping), mapped
by the app's one error handler. The codec is ``facewire.wire.v2_json``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from facewire import inference
from facewire.budget import UploadBudget
from facewire.dataplane import DataPlane
from facewire.settings import Settings
from facewire.wire import v2_json
from rest_service.body import uploaded_body

log = logging.getLogger("facewire.rest")

# Documented examples (not constraints: an unknown model must be the protocol's 404).
ModelName = Annotated[str, Path(examples=list(inference.MODELS))]
ModelVersion = Annotated[str, Path(examples=[inference.MODEL_VERSION])]
PROTOCOL = "rest-v2"
#: JSON around a base64 image: the body may be this much larger than the image limit.
BASE64_ALLOWANCE = 4 / 3


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` put in place of their references, so
    that it stands alone inside the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


#: The inference request, documented: the endpoint reads the body itself, since
#: binary tensor data follows the JSON, which a JSON schema cannot describe.
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline(v2_json.InferenceRequest.model_json_schema())},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "JSON header then binary tensor data "
                "(Inference-Header-Content-Length gives the JSON's length)",
            },
        },
    }
}


def create_router(settings: Settings, dataplane: DataPlane, uploads: UploadBudget) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (v2)"])

    @router.get("", summary="Server metadata")
    async def server_metadata() -> dict[str, object]:
        return inference.server_metadata()

    @router.get("/health/live", summary="The server is live")
    async def live() -> Response:
        return Response(status_code=200)

    @router.get("/health/ready", summary="The server is ready")
    async def ready() -> Response:
        return Response(status_code=200 if dataplane.ready else 503)

    async def model_ready(request: Request, name: str, version: str) -> Response:
        inference.find_model(name, version)
        return Response(status_code=200 if dataplane.ready else 503)

    async def model_metadata(request: Request, name: str, version: str) -> Response:
        inference.find_model(name, version)
        return JSONResponse(inference.model_metadata(name))

    async def model_config(request: Request, name: str, version: str) -> Response:
        inference.find_model(name, version)
        return JSONResponse(inference.model_config(name))

    async def infer(request: Request, name: str, version: str) -> Response:
        label = inference.MODELS[name].value if name in inference.MODELS else "invalid"
        with dataplane.metrics.track(PROTOCOL, label):
            model = inference.find_model(name, version)
            limit = int(settings.max_upload_bytes * BASE64_ALLOWANCE) + 64 * 1024
            async with uploaded_body(request, limit, settings, uploads) as body:
                length = request.headers.get(v2_json.HEADER_LENGTH)
                asked = v2_json.decode_request(body, length)
                core = inference.to_request(model, asked.inputs, frame_id=asked.id or "",
                                            protocol=PROTOCOL)  # fmt: skip
                result = await dataplane.detect(core)
                tensors = inference.to_outputs(result, asked.outputs)
        answer, header_length = v2_json.encode_response(
            name, asked.id, tensors, asked.binary, inference.response_parameters(result)
        )
        if header_length is None:
            return Response(answer, media_type="application/json")
        return Response(answer, media_type="application/octet-stream",
                        headers={v2_json.HEADER_LENGTH: str(header_length)})  # fmt: skip

    routes: list[tuple[str, Endpoint, str, str]] = [
        ("/ready", model_ready, "GET", "A model is ready"),
        ("", model_metadata, "GET", "Model metadata"),
        ("/config", model_config, "GET", "Model configuration (Triton's form, for perf_analyzer)"),
        ("/infer", infer, "POST", "Run one inference"),
    ]
    for suffix, endpoint, method, summary in routes:
        for path, route in zip(
            ("/models/{name}", "/models/{name}/versions/{version}"),
            _both_forms(endpoint),
            strict=True,
        ):
            router.add_api_route(
                path + suffix,
                route,
                methods=[method],
                summary=summary,
                response_class=Response,
                openapi_extra=_INFER_BODY if suffix == "/infer" else None,
            )
    return router


Endpoint = Callable[[Request, str, str], Awaitable[Response]]
Route = Callable[..., Awaitable[Response]]


def _both_forms(endpoint: Endpoint) -> tuple[Route, Route]:
    """The endpoint as FastAPI routes without and with a version in the path."""

    async def unversioned(request: Request, name: ModelName) -> Response:
        return await endpoint(request, name, "")

    async def versioned(request: Request, name: ModelName, version: ModelVersion) -> Response:
        return await endpoint(request, name, version)

    unversioned.__name__ = f"{endpoint.__name__}_latest"
    versioned.__name__ = f"{endpoint.__name__}_version"
    return unversioned, versioned
