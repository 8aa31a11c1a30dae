"""The ``facewire.v1.FaceDetection`` servicer: converts messages and awaits the core."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from facewire.dataplane import DataPlane
from facewire.errors import FacewireError
from facewire.messages import DetectionResult, Model
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from grpc_service.converters import (
    MalformedRequest,
    error_to_pb,
    request_to_core,
    result_to_pb,
)
from grpc_service.errors import grpc_status, refuse
from grpc_service.streams import StreamSlots, send

log = logging.getLogger("facewire.grpc")

MODEL_NAMES = frozenset(m.value for m in Model)
Incoming = pb.DetectRequest | MalformedRequest
_REFUSED = pb.DetectResponse()  # what a refused call returns; grpc sends only the status


def _label(message: Incoming) -> str:
    """The model as a metrics label: a known name, or "invalid" (never client text)."""
    if isinstance(message, MalformedRequest):
        return "invalid"
    name = message.model or Model.HAAR.value
    return name if name in MODEL_NAMES else "invalid"


class FaceDetectionServicer(pb_grpc.FaceDetectionServicer):
    def __init__(self, dataplane: DataPlane, streams: StreamSlots | None = None) -> None:
        self.dataplane = dataplane
        self.streams = streams or StreamSlots(64)

    async def _detect(self, message: Incoming, protocol: str) -> DetectionResult:
        """The one place gRPC requests are run and counted."""
        start = time.perf_counter_ns()
        try:
            result = await self.dataplane.detect(request_to_core(message, protocol))
        except FacewireError as exc:
            self.dataplane.metrics.observe(protocol, _label(message), exc.kind, start)
            raise
        self.dataplane.metrics.observe(protocol, _label(message), "ok", start)
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
            log.debug("DetectStream frame -> %s %s", grpc_status(exc).name, exc.message)
            if isinstance(request, MalformedRequest):
                return error_to_pb("", "", "grpc-stream", exc)
            return error_to_pb(request.frame_id, request.model, "grpc-stream", exc)
        return result_to_pb(result, "grpc-stream")
