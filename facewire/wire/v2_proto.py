"""The Open Inference Protocol over gRPC: ``inference.ModelInferRequest`` and
``ModelInferResponse`` to tensors and core types, and back.

Server side: ``request_to_inputs`` and ``result_to_response``. Client side:
``request_to_pb`` and ``response_to_result``. Tensor data travels in
``raw_input_contents`` and ``raw_output_contents``; inputs given in ``contents``
instead (by clients that do not use the raw fields) are read too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facewire import inference
from facewire.errors import InvalidInput
from facewire.inference import InputTensor
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.oip.v2 import grpc_predict_v2_pb2 as pb

# --- server side -------------------------------------------------------------------


def request_to_inputs(request: pb.ModelInferRequest) -> list[InputTensor]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput("raw_input_contents must have one entry per input")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        shape = tuple(tensor.shape)
        if raw:
            inputs.append(InputTensor(tensor.name, tensor.datatype, shape, raw=raw[i]))
        else:
            contents = tensor.contents
            elements: list[object] = (
                list(contents.bytes_contents)
                if tensor.datatype == "BYTES"
                else list(contents.bool_contents)
            )
            inputs.append(InputTensor(tensor.name, tensor.datatype, shape, elements=elements))
    return inputs


def result_to_response(
    name: str, request: pb.ModelInferRequest, result: DetectionResult
) -> pb.ModelInferResponse:
    """The answer to ``request`` (the outputs it names, or all), tensors in raw form."""
    tensors = inference.to_outputs(result, [o.name for o in request.outputs])
    response = pb.ModelInferResponse(
        model_name=name, model_version=inference.MODEL_VERSION, id=request.id
    )
    for key, value in inference.response_parameters(result).items():
        parameter = response.parameters[key]
        if isinstance(value, str):
            parameter.string_param = value
        else:
            parameter.double_param = float(value)  # type: ignore[arg-type]
    for tensor in tensors:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(tensor.raw())
    return response


# --- client side -------------------------------------------------------------------


def request_to_pb(request: DetectionRequest) -> pb.ModelInferRequest:
    """facewire's inference request: IMAGE (and SAVE) in ``raw_input_contents``."""
    message = pb.ModelInferRequest(
        model_name=inference.MODEL_NAMES[request.model], id=request.frame_id
    )
    message.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    message.raw_input_contents.append(inference.pack_bytes([request.image]))
    if request.save:
        message.inputs.add(name="SAVE", datatype="BOOL", shape=[1])
        message.raw_input_contents.append(b"\x01")
    return message


def response_to_result(response: pb.ModelInferResponse, model: Model) -> DetectionResult:
    values = {
        output.name: np.frombuffer(data, inference.NUMPY_TYPES[output.datatype]).reshape(
            output.shape
        )
        for output, data in zip(response.outputs, response.raw_output_contents, strict=True)
    }
    parameters: dict[str, Any] = {}
    for key, value in response.parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            parameters[key] = getattr(value, choice)
    return inference.from_outputs(values, model, response.id, parameters)
