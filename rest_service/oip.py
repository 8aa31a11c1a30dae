"""The Open Inference Protocol (KServe v2) over HTTP: ``/v2/...`` next to ``/v1/detect``.

Requests are JSON, or JSON followed by binary tensor data (Triton's binary tensor data
extension: the ``Inference-Header-Content-Length`` header gives the JSON's length, and
each binary input says its ``binary_data_size``). In JSON, a BYTES element is a base64
string. Answers are JSON, or JSON plus binary data for the outputs that ask for it
(``binary_data`` on an output, or ``binary_data_output`` on the request). Errors are
``{"error": "..."}`` with 400, 404 or 413 (503 while starting or stopping).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from facewire import inference
from facewire.dataplane import DataPlane
from facewire.errors import FacewireError, InvalidInput
from facewire.inference import InputTensor, OutputTensor
from facewire.settings import Settings
from rest_service.body import read_body
from rest_service.errors import connection_headers, http_status

log = logging.getLogger("facewire.rest")

HEADER_LENGTH = "inference-header-content-length"
# Documented examples (not constraints: an unknown model must be the protocol's 404).
ModelName = Annotated[str, Path(examples=list(inference.MODELS))]
ModelVersion = Annotated[str, Path(examples=[inference.MODEL_VERSION])]
PROTOCOL = "rest-v2"
#: JSON around a base64 image: the body may be this much larger than the image limit.
BASE64_ALLOWANCE = 4 / 3


_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "examples": ["IMAGE"]},
        "datatype": {"type": "string", "examples": ["BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer"}, "examples": [[1]]},
        "data": {"type": "array", "description": "BYTES elements as base64 strings"},
        "parameters": {"type": "object", "description": "binary_data_size for binary data"},
    },
}
#: The JSON inference request, documented (the endpoint reads the body itself, binary
#: tensor data included, which a JSON schema cannot describe).
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                        "parameters": {"type": "object"},
                    },
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "JSON header then binary tensor data "
                "(Inference-Header-Content-Length gives the JSON's length)",
            },
        },
    }
}


def error_response(exc: FacewireError) -> JSONResponse:
    """The protocol's error form, with the status the REST service uses for ``exc``."""
    status, headers = http_status(exc), connection_headers(exc)
    return JSONResponse({"error": exc.message}, status_code=status, headers=headers)


def create_router(settings: Settings, dataplane: DataPlane) -> APIRouter:
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
        start = time.perf_counter_ns()
        label = inference.MODELS[name].value if name in inference.MODELS else "invalid"
        try:
            model = inference.find_model(name, version)
            limit = int(settings.max_upload_bytes * BASE64_ALLOWANCE) + 64 * 1024
            body = await read_body(request, limit, settings)
            header, binary = _split(body, request.headers.get(HEADER_LENGTH))
            inputs, outputs, binary_default = _parse_request(header, binary)
            core = inference.to_request(
                model, inputs, frame_id=str(header.get("id", "")), protocol=PROTOCOL
            )
            result = await dataplane.detect(core)
            tensors = inference.to_outputs(result, [o["name"] for o in outputs])
        except FacewireError as exc:
            dataplane.metrics.observe(PROTOCOL, label, exc.kind, start)
            raise
        dataplane.metrics.observe(PROTOCOL, label, "ok", start)
        wants_binary = {o["name"]: o.get("binary", binary_default) for o in outputs}
        return _answer(name, header.get("id"), tensors, wants_binary, binary_default, result)

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
    """The endpoint as FastAPI routes without and with a version in the path, each
    answering FacewireError in the protocol's own error form."""

    async def unversioned(request: Request, name: ModelName) -> Response:
        return await _answering(endpoint(request, name, ""))

    async def versioned(request: Request, name: ModelName, version: ModelVersion) -> Response:
        return await _answering(endpoint(request, name, version))

    unversioned.__name__ = f"{endpoint.__name__}_latest"
    versioned.__name__ = f"{endpoint.__name__}_version"
    return unversioned, versioned


async def _answering(pending: Awaitable[Response]) -> Response:
    try:
        return await pending
    except FacewireError as exc:
        return error_response(exc)


def _split(body: bytes, declared: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON inference header and the binary data after it."""
    if declared is None:
        json_part, binary = body, b""
    else:
        if not declared.isdigit() or int(declared) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} is not a length within the body")
        json_part, binary = body[: int(declared)], body[int(declared) :]
    try:
        header = json.loads(json_part)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the inference request is not valid JSON") from None
    if not isinstance(header, dict):
        raise InvalidInput("the inference request must be a JSON object")
    return header, binary


def _parse_request(
    header: dict[str, Any], binary: bytes
) -> tuple[list[InputTensor], list[dict[str, Any]], bool]:
    """Inputs, the outputs asked for (name and binary wish), and the request's default
    for binary outputs."""
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the request has no inputs (missing input IMAGE)")
    inputs, pos = [], 0
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise InvalidInput("each input must be a JSON object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidInput("each input needs a name and a datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise InvalidInput(f"input {name[:50]} needs a shape: a list of integers")
        size = _parameters(item).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise InvalidInput(f"input {name[:50]}: binary_data_size is beyond the body")
            raw = binary[pos : pos + size]
            pos += size
            inputs.append(InputTensor(name, datatype, tuple(shape), raw=raw))
        else:
            data = item.get("data")
            if not isinstance(data, list):
                raise InvalidInput(f"input {name[:50]} has neither data nor binary_data_size")
            inputs.append(
                InputTensor(name, datatype, tuple(shape), elements=_elements(data, datatype))
            )
    if pos != len(binary):
        raise InvalidInput("the binary data is longer than the inputs' binary_data_size")
    binary_default = bool(_parameters(header).get("binary_data_output", False))
    outputs = []
    for item in header.get("outputs") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each requested output must be an object with a name")
        wish = _parameters(item).get("binary_data")
        outputs.append(
            {"name": item["name"], **({"binary": bool(wish)} if wish is not None else {})}
        )
    return inputs, outputs, binary_default


def _parameters(item: dict[str, Any]) -> dict[str, Any]:
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object")
    return params


def _elements(data: list[Any], datatype: str) -> list[object]:
    flat: list[Any] = []
    stack = list(reversed(data))
    while stack:  # nested lists are row-major tensors: flatten them
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
        else:
            flat.append(value)
    if datatype != "BYTES":
        return flat
    decoded: list[object] = []
    for value in flat:
        if not isinstance(value, str):
            raise InvalidInput("a BYTES element in JSON must be a base64 string")
        try:
            decoded.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput("a BYTES element in JSON must be a base64 string") from None
    return decoded


def _answer(
    model_name: str,
    request_id: object,
    tensors: list[OutputTensor],
    wants_binary: dict[str, bool],
    binary_default: bool,
    result: Any,
) -> Response:
    outputs, chunks = [], []
    for tensor in tensors:
        item: dict[str, object] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if wants_binary.get(tensor.name, binary_default):
            raw = tensor.raw()
            item["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            item["data"] = tensor.elements()
        outputs.append(item)
    document: dict[str, object] = {
        "model_name": model_name,
        "model_version": inference.MODEL_VERSION,
        "outputs": outputs,
        "parameters": inference.response_parameters(result),
    }
    if request_id is not None:
        document["id"] = str(request_id)
    header = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
