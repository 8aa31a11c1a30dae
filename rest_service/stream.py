"""``/v1/stream``: detections over one WebSocket, the stream browsers can open.

Each frame is one binary message (the image, as ``POST /v1/detect`` takes it), which
may be preceded by a text message with that frame's options (``StreamFrame``: frame_id,
model, save). Each frame gets one text message back, in order: the detection
(``DetectResponse``, protocol ``rest-ws``) or, for a frame that failed, the status and
message ``POST /v1/detect`` would have answered (``StreamError``); the stream goes on.

What ends a stream, with a close code and a reason: options that are not a
``StreamFrame`` (1007), a message over the upload limit plus its envelope (1009, from
uvicorn's ``ws_max_size``), and no message for ``FACEWIRE_STREAM_IDLE_TIMEOUT_S`` (1001).
The limits, the upload budget, auth, metrics and saving are those of the other paths:
uvicorn pauses reading until each message is taken, so a connection holds at most one
message beyond the one being answered, and each counts against the budget while held.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from facewire.budget import UploadBudget
from facewire.dataplane import DataPlane
from facewire.errors import FacewireError
from facewire.messages import DetectionRequest, Model
from facewire.settings import Settings
from facewire.wire.v1_json import StreamError, StreamFrame, result_to_json
from rest_service.errors import http_status

log = logging.getLogger("facewire.rest")

STREAM_PATH = "/v1/stream"
#: RFC 6455 §7.4.1 close codes.
GOING_AWAY, INVALID_DATA = 1001, 1007


class DetectionStream:
    """The endpoint: one per service, one ``serve`` per connection."""

    def __init__(self, settings: Settings, dataplane: DataPlane, uploads: UploadBudget) -> None:
        self.settings = settings
        self.dataplane = dataplane
        self.uploads = uploads

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        idle = self.settings.stream_idle_timeout_s
        options = StreamFrame()
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        message = await websocket.receive()
                except TimeoutError:
                    await websocket.close(GOING_AWAY, f"no frame in {idle:g} s")
                    return
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is not None:
                    try:
                        options = StreamFrame.model_validate_json(text)
                    except ValidationError as exc:
                        reason = f"not a frame's options: {_first_error(exc)}"
                        await websocket.close(INVALID_DATA, reason[:120])
                        return
                    continue
                await websocket.send_text(await self._answer(message.get("bytes") or b"", options))
                options = StreamFrame()  # the options applied to that one frame
        except WebSocketDisconnect:
            return

    async def _answer(self, image: bytes, options: StreamFrame) -> str:
        try:
            with self.dataplane.metrics.track("rest-ws", Model.label(options.model)):
                lease = await self.uploads.reserve(len(image))
                try:
                    result = await self.dataplane.detect(
                        DetectionRequest(
                            image=image,
                            model=Model.parse(options.model),
                            save=options.save,
                            frame_id=options.frame_id,
                            protocol="rest-ws",
                        )
                    )
                finally:
                    lease.release()
        except FacewireError as exc:
            status = http_status(exc)
            log.debug("%s frame -> %d %s", STREAM_PATH, status, exc.message)
            error = StreamError(frame_id=options.frame_id, model=options.model,
                                status=status, detail=exc.message)  # fmt: skip
            return error.model_dump_json()
        return result_to_json(result, "rest-ws").model_dump_json()


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "message"
    return f"{where}: {error['msg']}"
