"""The ``facewire.v1.FaceDetection`` servicer: converts messages and awaits the core."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from facewire.dataplane import DataPlane
from facewire.errors import FacewireError, InvalidInput
from facewire.messages import DetectionResult, Model
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from facewire.wire.v1_proto import error_to_pb, request_to_core, result_to_pb
from grpc_service.errors import grpc_status, refuse
from grpc_service.registration import Malformed
from grpc_service.streams import StreamSlots, send

log = logging.getLogger("facewire.grpc")

Incoming = pb.DetectRequest | Malformed
_REFUSED = pb.DetectResponse()  # what a refused call returns; grpc sends only the status


class FaceDetectionServicer(pb_grpc.FaceDetectionServicer):
    def __init__(self, dataplane: DataPlane, streams: StreamSlots | None = None) -> None:
        self.dataplane = dataplane
        self.streams = streams or StreamSlots(64)

    async def _detect(self, message: Incoming, protocol: str) -> DetectionResult:
        """The one place gRPC requests are run."""
        label = "invalid" if isinstance(message, Malformed) else Model.label(message.model)
        with self.dataplane.metrics.track(protocol, label):
            if isinstance(message, Malformed):
                raise InvalidInput(message.reason)
            result = await self.dataplane.detect(request_to_core(message, protocol))
        log.debug(
            "%s frame_id=%r model=%s faces=%d total=%.2fms",
            protocol,
            result.frame_id,
            result.model.value,
            len(result.boxes),
            result.timings.total,
        )
        return result

    async def Detect(  # noqa: N802 (the name is the RPC's)
        self, request: Incoming, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DetectResponse:
        try:
            result = await self._detect(request, "grpc")
        except FacewireError as exc:
            log.debug("Detect -> %s %s", grpc_status(exc).name, exc.message)
            refuse(context, exc)
            return _REFUSED
        return result_to_pb(result, "grpc")

    async def DetectStream(  # type: ignore[override]  # noqa: N802 (writes, not yields)
        self,
        request_iterator: AsyncIterator[Incoming],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        async with self.streams.slot(context):
            # One frame at a time, so responses come back in request order, and a client
            # that stops reading stops the stream (its window fills; see streams.send).
            async for request in request_iterator:
                if not await send(context, await self._stream_answer(request)):
                    return

    async def _stream_answer(self, request: Incoming) -> pb.DetectResponse:
        try:
            result = await self._detect(request, "grpc-stream")
        except FacewireError as exc:
            code = grpc_status(exc)
            log.debug("DetectStream frame -> %s %s", code.name, exc.message)
            frame_id, model = ("", "") if isinstance(request, Malformed) else (
                request.frame_id, request.model)  # fmt: skip
            return error_to_pb(frame_id, model, "grpc-stream", code.value[0], exc.message)
        return result_to_pb(result, "grpc-stream")
