"""The Open Inference Protocol's ``inference.GRPCInferenceService`` next to FaceDetection.

Tensor data comes in ``raw_input_contents`` (or, from clients that do not use it, in
each input's ``contents``) and always goes out in ``raw_output_contents``. Errors end a
unary call with the status the service uses for them (NOT_FOUND for an unknown model);
on ModelStreamInfer a failed request gets an ``error_message`` and the stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

import facewire
from facewire import inference
from facewire.dataplane import DataPlane
from facewire.errors import FacewireError, InvalidInput
from facewire.oip.v2 import grpc_predict_v2_pb2 as pb
from facewire.wire.v2_proto import request_to_inputs, result_to_response
from grpc_service import registration
from grpc_service.admission import Admission
from grpc_service.errors import grpc_status, refuse
from grpc_service.registration import Malformed
from grpc_service.streams import StreamSlots, send

log = logging.getLogger("facewire.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME = SERVICE.full_name
PROTOCOL = "grpc-v2"
_REFUSED = pb.ModelInferResponse()  # what a refused call returns; grpc sends only the status
Context = grpc.aio.ServicerContext[Any, Any]


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
        """The one place v2 inferences are run."""
        name = request.model_name if isinstance(request, pb.ModelInferRequest) else ""
        label = inference.MODELS[name].value if name in inference.MODELS else "invalid"
        with self.dataplane.metrics.track(protocol, label):
            if isinstance(request, Malformed):
                raise InvalidInput(request.reason)
            assert isinstance(request, pb.ModelInferRequest)
            model = inference.find_model(request.model_name, request.model_version)
            core = inference.to_request(
                model, request_to_inputs(request), frame_id=request.id, protocol=protocol
            )
            result = await self.dataplane.detect(core)
            return result_to_response(request.model_name, request, result)

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
    if isinstance(request, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
    assert isinstance(request, kind)
    return request


async def _model_or_abort(name: str, version: str, context: Context) -> None:
    try:
        inference.find_model(name, version)
    except FacewireError as exc:
        await context.abort(grpc_status(exc), exc.message)


def register(servicer: InferenceServicer, server: grpc.aio.Server, admission: Admission) -> None:
    """Every method of the service, requests parsed leniently (``registration``)."""
    registration.register(server, SERVICE, pb, servicer, admission)
