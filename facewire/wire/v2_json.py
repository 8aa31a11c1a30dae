"""The Open Inference Protocol over HTTP: the JSON documents as pydantic models (as
``mlserver.types`` has them), and Triton's binary tensor data extension around them.

A request or an answer is a JSON document, optionally followed by binary data: the
``Inference-Header-Content-Length`` header gives the JSON's length, and each tensor
sent in binary says its ``binary_data_size`` in its parameters. In JSON, a BYTES
element is a base64 string.

Server side: ``decode_request`` and ``encode_response``. Client side: ``encode_request``
and ``decode_response``. Refusals are ``InvalidInput`` with a message for the client.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import ErrorDetails

from facewire import inference
from facewire.errors import InvalidInput
from facewire.inference import InputTensor, OutputTensor
from facewire.messages import DetectionRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
Parameters = dict[str, Any]


class RequestInput(BaseModel):
    name: str = Field(examples=["IMAGE"])
    datatype: str = Field(examples=["BYTES"])
    shape: list[int] = Field(examples=[[1]])
    parameters: Parameters | None = Field(None, description="binary_data_size: binary data")
    data: list[Any] | None = Field(None, description="BYTES elements as base64 strings")


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters | None = Field(None, description="binary_data: answer in binary")


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = Field(None, description="binary_data_output: all binary")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class InferenceErrorResponse(BaseModel):
    error: str


@dataclass(frozen=True)
class DecodedRequest:
    """What the server needs of one request: its id, its inputs as tensors, and the
    outputs asked for with whether each wants binary data."""

    id: str | None
    inputs: list[InputTensor]
    outputs: list[str]
    binary: dict[str, bool]


# --- server side -------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    document, binary = _split(body, header_length)
    try:
        request = InferenceRequest.model_validate_json(document)
    except ValidationError as error:
        raise InvalidInput(_explain(error.errors()[0], document)) from None
    inputs, pos = [], 0
    for item in request.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        shape = tuple(item.shape)
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise InvalidInput(f"input {item.name[:50]}: binary_data_size is beyond the body")
            inputs.append(
                InputTensor(item.name, item.datatype, shape, raw=binary[pos : pos + size])
            )
            pos += size
        elif item.data is None:
            raise InvalidInput(f"input {item.name[:50]} has neither data nor binary_data_size")
        else:
            elements = _elements(item.data, item.datatype)
            inputs.append(InputTensor(item.name, item.datatype, shape, elements=elements))
    if pos != len(binary):
        raise InvalidInput("the binary data is longer than the inputs' binary_data_size")
    # Binary answers: as each output asks, else as the request asks for all of them.
    every = bool((request.parameters or {}).get("binary_data_output", False))
    wishes = dict.fromkeys(inference.OUTPUT_NAMES, every)
    for output in request.outputs or []:
        wish = (output.parameters or {}).get("binary_data")
        wishes[output.name] = every if wish is None else bool(wish)
    names = [o.name for o in request.outputs or []]
    return DecodedRequest(request.id, inputs, names, wishes)


def encode_response(
    model_name: str,
    request_id: str | None,
    tensors: Sequence[OutputTensor],
    binary: dict[str, bool],
    parameters: Parameters,
) -> tuple[bytes, int | None]:
    """The answer's bytes, and the JSON's length when binary data follows it (for the
    ``Inference-Header-Content-Length`` header; None: the answer is all JSON)."""
    outputs, chunks = [], []
    for tensor in tensors:
        output = ResponseOutput(name=tensor.name, datatype=tensor.datatype,
                                shape=list(tensor.shape))  # fmt: skip
        if binary.get(tensor.name, False):
            raw = tensor.raw()
            output.parameters = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            output.data = tensor.elements()
        outputs.append(output)
    document = (
        InferenceResponse(
            model_name=model_name,
            model_version=inference.MODEL_VERSION,
            id=request_id,
            parameters=parameters,
            outputs=outputs,
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )
    if not chunks:
        return document, None
    return document + b"".join(chunks), len(document)


# --- client side -------------------------------------------------------------------


def encode_request(request: DetectionRequest, binary: bool = True) -> tuple[bytes, int]:
    """facewire's inference request; the model goes in the URL. With ``binary``: IMAGE as
    one length-prefixed BYTES element after the JSON, every output asked for in binary;
    without: all JSON (IMAGE in base64, answers in JSON arrays). Returns the body and
    the JSON's length."""
    raw = inference.pack_bytes([request.image])
    if binary:
        image = RequestInput(name="IMAGE", datatype="BYTES", shape=[1],
                             parameters={"binary_data_size": len(raw)})  # fmt: skip
    else:
        image = RequestInput(name="IMAGE", datatype="BYTES", shape=[1],
                             data=[base64.b64encode(request.image).decode()])  # fmt: skip
    inputs = [image]
    if request.save:
        inputs.append(RequestInput(name="SAVE", datatype="BOOL", shape=[1], data=[True]))
    wanted = InferenceRequest(
        id=request.frame_id, inputs=inputs, parameters={"binary_data_output": binary}
    )
    document = wanted.model_dump_json(exclude_none=True).encode()
    return (document + raw, len(document)) if binary else (document, len(document))


def decode_response(
    answer: bytes, header_length: int | None
) -> tuple[dict[str, np.ndarray], Parameters]:
    """The outputs by name, and the answer's parameters."""
    end = len(answer) if header_length is None else header_length
    response = InferenceResponse.model_validate_json(answer[:end])
    values, pos = {}, end
    for output in response.outputs:
        dtype = np.dtype(inference.NUMPY_TYPES[output.datatype])
        size = (output.parameters or {}).get("binary_data_size")
        if size is None:
            data = np.array(output.data, dtype)
        else:
            data = np.frombuffer(answer, dtype, count=size // dtype.itemsize, offset=pos)
            pos += size
        values[output.name] = data.reshape(output.shape)
    return values, response.parameters or {}


def decode_error(answer: bytes) -> str | None:
    """The ``error`` of an error answer, or None when it is not one."""
    try:
        return InferenceErrorResponse.model_validate_json(answer).error
    except ValidationError:
        return None


# --- the parts -----------------------------------------------------------------------


def _split(body: bytes, declared: str | None) -> tuple[bytes, bytes]:
    """The JSON document and the binary data after it."""
    if declared is None:
        return body, b""
    if not declared.isdigit() or int(declared) > len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is not a length within the body")
    return body[: int(declared)], body[int(declared) :]


def _explain(error: ErrorDetails, document: bytes) -> str:
    """pydantic's first complaint, as the protocol's users are told it."""
    where, kind = error["loc"], error["type"]
    if kind == "json_invalid":
        return "the inference request is not valid JSON"
    if not where:
        return "the inference request must be a JSON object"
    if where[0] == "inputs" and len(where) == 1:
        return "the request has no inputs (missing input IMAGE)"
    if where[0] == "inputs" and len(where) == 2:
        return "each input must be a JSON object"
    if where[0] == "inputs":
        field = where[2]
        if field in ("name", "datatype"):
            return "each input needs a name and a datatype"
        name = _input_name(document, int(where[1]))
        if field == "shape":
            return f"input {name} needs a shape: a list of integers"
        if field == "data":
            return f"input {name} has neither data nor binary_data_size"
    if where[-1] == "parameters":
        return "parameters must be a JSON object"
    if where[0] == "outputs":
        return "each requested output must be an object with a name"
    if where[0] == "id":
        return "the request id must be a string"
    return f"invalid inference request at {'.'.join(map(str, where))}: {error['msg']}"


def _input_name(document: bytes, index: int) -> str:
    """The name of input ``index`` for a message: the document is JSON by now, though
    not a valid request."""
    item = json.loads(document)["inputs"][index]
    name = item.get("name") if isinstance(item, dict) else None
    return name[:50] if isinstance(name, str) else f"#{index + 1}"


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
