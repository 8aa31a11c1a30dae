"""Protobuf messages to core types and back, in pairs (``*_to_core`` / ``*_to_pb``)."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from facewire.errors import FacewireError, InvalidInput
from facewire.messages import (
    Box,
    Crop,
    DetectionRequest,
    DetectionResult,
    Model,
    Size,
    Timings,
)
from facewire.v1 import face_detection_pb2 as pb
from grpc_service.errors import grpc_status


@dataclass(frozen=True, slots=True)
class MalformedRequest:
    """Bytes that do not parse as a ``DetectRequest`` (say, invalid UTF-8 in ``frame_id``).

    Parsing happens in our handler rather than inside grpc, where a failure would end the
    call, or the whole DetectStream, with UNKNOWN.
    """

    reason: str = "the message is not a valid facewire.v1.DetectRequest"


def parse_request(raw: bytes) -> pb.DetectRequest | MalformedRequest:
    try:
        return pb.DetectRequest.FromString(raw)
    except DecodeError:
        return MalformedRequest()


def request_to_core(
    message: pb.DetectRequest | MalformedRequest, protocol: str
) -> DetectionRequest:
    if isinstance(message, MalformedRequest):
        raise InvalidInput(message.reason)
    return DetectionRequest(
        image=message.image,
        model=Model.parse(message.model),
        save=message.save,
        frame_id=message.frame_id,
        protocol=protocol,
    )


def request_to_pb(request: DetectionRequest) -> pb.DetectRequest:
    return pb.DetectRequest(
        image=request.image,
        model=request.model.value,
        save=request.save,
        frame_id=request.frame_id,
    )


def result_to_pb(result: DetectionResult, protocol: str) -> pb.DetectResponse:
    t = result.timings
    return pb.DetectResponse(
        frame_id=result.frame_id,
        model=result.model.value,
        protocol=protocol,
        boxes=[pb.Box(x=b.x, y=b.y, width=b.width, height=b.height) for b in result.boxes],
        frame=pb.Size(width=result.frame.width, height=result.frame.height),
        crop=pb.Crop(x=result.crop.x, y=result.crop.y, size=result.crop.size),
        image=pb.Size(width=result.image.width, height=result.image.height),
        timings=pb.Timings(
            decode_ms=t.decode,
            preprocess_ms=t.preprocess,
            detect_ms=t.detect,
            save_ms=t.save,
            total_ms=t.total,
            queue_ms=t.queue,
        ),
        saved_image=result.saved_image,
    )


def result_to_core(message: pb.DetectResponse) -> DetectionResult:
    t = message.timings
    return DetectionResult(
        frame_id=message.frame_id,
        model=Model(message.model),
        boxes=tuple(Box(b.x, b.y, b.width, b.height) for b in message.boxes),
        frame=Size(message.frame.width, message.frame.height),
        crop=Crop(message.crop.x, message.crop.y, message.crop.size),
        image=Size(message.image.width, message.image.height),
        timings=Timings(
            t.decode_ms, t.preprocess_ms, t.detect_ms, t.save_ms, t.total_ms, t.queue_ms
        ),
        saved_image=message.saved_image if message.HasField("saved_image") else None,
    )


def error_to_pb(frame_id: str, model: str, protocol: str, exc: FacewireError) -> pb.DetectResponse:
    """The in-stream answer for a frame that failed (DetectStream goes on after it)."""
    return pb.DetectResponse(
        frame_id=frame_id,
        model=model,
        protocol=protocol,
        error=pb.Error(code=grpc_status(exc).value[0], message=exc.message),
    )
