"""``POST /v1/detect``'s JSON and the WebSocket stream's (``/v1/stream``): the pydantic
models, and the core result in and out of them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from facewire.messages import Box, Crop, DetectionResult, Model, Size, Timings


class BoxJSON(BaseModel):
    x: int
    y: int
    width: int
    height: int


class SizeJSON(BaseModel):
    width: int
    height: int


class CropJSON(BaseModel):
    x: int = Field(description="Left edge of the analysed square in the original image.")
    y: int = Field(description="Top edge of the analysed square in the original image.")
    size: int = Field(description="Side of the analysed square in the original image.")


class TimingsJSON(BaseModel):
    decode: float
    preprocess: float
    detect: float
    save: float
    total: float = Field(description="The pipeline's own work: decode to save.")
    queue: float = Field(description="Wait for a pipeline thread, before total started.")


class DetectResponse(BaseModel):
    frame_id: str
    model: str
    #: "rest" for POST /v1/detect, "rest-ws" for the WebSocket stream /v1/stream.
    protocol: Literal["rest", "rest-ws"] = "rest"
    boxes: list[BoxJSON] = Field(description="Faces in the 720×720 frame.")
    frame: SizeJSON
    crop: CropJSON
    image: SizeJSON = Field(description="The original image's size.")
    timings_ms: TimingsJSON
    saved_image: str | None = Field(description="Stored file name when save was asked for.")


class ErrorResponse(BaseModel):
    detail: str


class StreamFrame(BaseModel):
    """/v1/stream: the text message that may precede a frame's binary message, with the
    options POST /v1/detect takes from its query (they apply to that one frame)."""

    model_config = ConfigDict(extra="forbid")
    frame_id: str = ""
    model: str = ""
    save: bool = False


class StreamError(BaseModel):
    """/v1/stream: the answer to a frame that failed (the stream goes on): the status
    and message POST /v1/detect would have answered with."""

    frame_id: str
    model: str
    protocol: Literal["rest-ws"] = "rest-ws"
    status: int
    detail: str


RestProtocol = Literal["rest", "rest-ws"]


def result_to_json(result: DetectionResult, protocol: RestProtocol = "rest") -> DetectResponse:
    t = result.timings
    return DetectResponse(
        frame_id=result.frame_id,
        protocol=protocol,
        model=result.model.value,
        boxes=[BoxJSON(x=b.x, y=b.y, width=b.width, height=b.height) for b in result.boxes],
        frame=SizeJSON(width=result.frame.width, height=result.frame.height),
        crop=CropJSON(x=result.crop.x, y=result.crop.y, size=result.crop.size),
        image=SizeJSON(width=result.image.width, height=result.image.height),
        timings_ms=TimingsJSON(
            decode=t.decode,
            preprocess=t.preprocess,
            detect=t.detect,
            save=t.save,
            total=t.total,
            queue=t.queue,
        ),
        saved_image=result.saved_image,
    )


def json_to_result(response: DetectResponse) -> DetectionResult:
    t = response.timings_ms
    return DetectionResult(
        frame_id=response.frame_id,
        model=Model(response.model),
        boxes=tuple(Box(b.x, b.y, b.width, b.height) for b in response.boxes),
        frame=Size(response.frame.width, response.frame.height),
        crop=Crop(response.crop.x, response.crop.y, response.crop.size),
        image=Size(response.image.width, response.image.height),
        timings=Timings(t.decode, t.preprocess, t.detect, t.save, t.total, t.queue),
        saved_image=response.saved_image,
    )
