"""The Open Inference Protocol's ``inference.GRPCInferenceService`` next to FaceDetection.

Tensor data comes in ``raw_input_contents`` (or, from clients that do not use it, in
each input's ``contents``) and always goes out in ``raw_output_contents``. Errors end a
unary call with the status the service uses for them (NOT_FOUND for an unknown model);
on ModelStreamInfer a failed request gets an ``error_message`` and the stream goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

import facewire
from facewire import inference
from facewire.dataplane import DataPlane
from facewire.errors import FacewireError, InvalidInput
from facewire.inference import InputTensor
from facewire.messages import DetectionResult
from facewire.oip.v2 import grpc_predict_v2_pb2 as pb
from grpc_service.errors import grpc_status, refuse
from grpc_service.streams import StreamSlots, send

log = logging.getLogger("facewire.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PROTOCOL = "grpc-v2"
_REFUSED = pb.ModelInferResponse()  # what a refused call returns; grpc sends only the status
Context = grpc.aio.ServicerContext[Any, Any]


class Malformed:
    """A request that did not parse as the method's message."""


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


class InferenceServicer:
    """The service's methods; ``register`` wires them with lenient deserializers."""

    def __init__(self, dataplane: DataPlane, streams: StreamSlots | None = None) -> None:
        self.dataplane = dataplane
        self.streams = streams or StreamSlots(64)

    async def ServerLive(self, request: object, context: Context) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: object, context: Context) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.dataplane.ready)

    async def ServerMetadata(self, request: object, context: Context) -> pb.ServerMetadataResponse:  # noqa: N802
        return pb.ServerMetadataResponse(
            name=inference.SERVER_NAME,
            version=facewire.__version__,
            extensions=inference.EXTENSIONS,
        )

    async def ModelReady(self, request: object, context: Context) -> pb.ModelReadyResponse:  # noqa: N802
        message = await _checked(request, pb.ModelReadyRequest, context)
        await _model_or_abort(message.name, message.version, context)
        return pb.ModelReadyResponse(ready=self.dataplane.ready)

    async def ModelMetadata(self, request: object, context: Context) -> pb.ModelMetadataResponse:  # noqa: N802
        message = await _checked(request, pb.ModelMetadataRequest, context)
        await _model_or_abort(message.name, message.version, context)
        response = pb.ModelMetadataResponse(
            name=message.name, versions=[inference.MODEL_VERSION], platform=inference.PLATFORM
        )
        for spec in inference.INPUTS:
            response.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        for spec in inference.OUTPUTS:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        return response

    async def ModelConfig(self, request: object, context: Context) -> pb.ModelConfigResponse:  # noqa: N802
        message = await _checked(request, pb.ModelConfigRequest, context)
        await _model_or_abort(message.name, message.version, context)
        config = pb.ModelConfig(
            name=message.name, platform=inference.PLATFORM, backend="facewire", max_batch_size=0
        )
        for spec in inference.INPUTS:
            config.input.add(
                name=spec.name,
                data_type=pb.DataType.Value(inference.triton_type(spec.datatype)),
                dims=spec.shape,
                optional=spec.optional,
            )
        for spec in inference.OUTPUTS:
            config.output.add(
                name=spec.name,
                data_type=pb.DataType.Value(inference.triton_type(spec.datatype)),
                dims=spec.shape,
            )
        return pb.ModelConfigResponse(config=config)

    async def _infer(self, request: object, protocol: str) -> pb.ModelInferResponse:
        """The one place v2 inferences are run and counted."""
        start = time.perf_counter_ns()
        name = request.model_name if isinstance(request, pb.ModelInferRequest) else ""
        label = inference.MODELS[name].value if name in inference.MODELS else "invalid"
        try:
            if not isinstance(request, pb.ModelInferRequest):
                raise InvalidInput(
                    "malformed ModelInferRequest: it is not a valid protobuf message"
                )
            model = inference.find_model(request.model_name, request.model_version)
            core = inference.to_request(
                model, request_to_inputs(request), frame_id=request.id, protocol=protocol
            )
            result = await self.dataplane.detect(core)
            response = result_to_response(request.model_name, request, result)
        except FacewireError as exc:
            self.dataplane.metrics.observe(protocol, label, exc.kind, start)
            raise
        self.dataplane.metrics.observe(protocol, label, "ok", start)
        return response

    async def ModelInfer(self, request: object, context: Context) -> pb.ModelInferResponse:  # noqa: N802
        try:
            return await self._infer(request, PROTOCOL)
        except FacewireError as exc:
            refuse(context, exc)
            return _REFUSED

    async def ModelStreamInfer(  # noqa: N802
        self, requests: AsyncIterator[object], context: Context
    ) -> None:
        async with self.streams.slot(context):
            async for request in requests:  # one at a time: answers in request order
                try:
                    response = await self._infer(request, PROTOCOL + "-stream")
                except FacewireError as exc:
                    answer = pb.ModelStreamInferResponse(error_message=exc.message)
                else:
                    answer = pb.ModelStreamInferResponse(infer_response=response)
                if not await send(context, answer):
                    return


async def _checked(request: object, kind: type[Any], context: Context) -> Any:
    if not isinstance(request, kind):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {kind.__name__}")
    return request


async def _model_or_abort(name: str, version: str, context: Context) -> None:
    try:
        inference.find_model(name, version)
    except FacewireError as exc:
        await context.abort(grpc_status(exc), exc.message)


def _lenient(kind: type[Message]) -> Callable[[bytes], object]:
    def parse(raw: bytes) -> object:
        try:
            return kind.FromString(raw)
        except DecodeError:
            return Malformed()

    return parse


def register(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Every method of the service, with requests parsed leniently so that a malformed
    one is INVALID_ARGUMENT (or an in-stream error), never UNKNOWN."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        request_kind = getattr(pb, method.input_type.name)
        response_kind = getattr(pb, method.output_type.name)
        behaviour = getattr(servicer, method.name)
        make = (
            grpc.stream_stream_rpc_method_handler
            if method.client_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            behaviour,
            request_deserializer=_lenient(request_kind),
            response_serializer=response_kind.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # as generated code does
