"""``facewire.v1`` protobuf messages to core types and back, in pairs."""

from __future__ import annotations

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

#: These messages as an HTTP body (REST's /v1/detect reads and answers them):
#: ``application/x-protobuf`` is what clients send; ``application/protobuf`` is the name
#: being registered (draft-ietf-dispatch-mime-protobuf). The first is the client's.
MEDIA_TYPES = ("application/x-protobuf", "application/protobuf")


def request_to_core(message: pb.DetectRequest, protocol: str) -> DetectionRequest:
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
    # Sub-messages are filled in place: passing built ones to the constructor copies
    # each, which made this twice as slow (it runs once per answer).
    message = pb.DetectResponse(
        frame_id=result.frame_id,
        model=result.model.value,
        protocol=protocol,
        boxes=[pb.Box(x=b.x, y=b.y, width=b.width, height=b.height) for b in result.boxes],
        saved_image=result.saved_image,
    )
    frame, crop, image, t = message.frame, message.crop, message.image, result.timings
    frame.width, frame.height = result.frame.width, result.frame.height
    crop.x, crop.y, crop.size = result.crop.x, result.crop.y, result.crop.size
    image.width, image.height = result.image.width, result.image.height
    timings = message.timings
    timings.decode_ms, timings.preprocess_ms, timings.detect_ms = t.decode, t.preprocess, t.detect
    timings.save_ms, timings.total_ms, timings.queue_ms = t.save, t.total, t.queue
    return message


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


def error_to_pb(
    frame_id: str, model: str, protocol: str, code: int, message: str
) -> pb.DetectResponse:
    """The in-stream answer for a frame that failed (DetectStream goes on after it);
    ``code`` is the gRPC status code's number."""
    return pb.DetectResponse(
        frame_id=frame_id,
        model=model,
        protocol=protocol,
        error=pb.Error(code=code, message=message),
    )
