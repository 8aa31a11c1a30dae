"""``/v1/stream``: detections over one WebSocket, the stream browsers can open.

Each frame is one binary message (the image, as ``POST /v1/detect`` takes it), which
may be preceded by a text message with that frame's options (``StreamFrame``: frame_id,
model, save). Each frame gets one text message back, in order: the detection
(``DetectResponse``, protocol ``rest-ws``) or, for a frame that failed, the status and
message ``POST /v1/detect`` would have answered (``StreamError``); the stream goes on.

What ends a stream, with a close code and a reason: options that are not a
``StreamFrame`` (1007) or over 4 KiB (1009), a message over the upload limit plus its
envelope (1009, from uvicorn's ``ws_max_size``), no message, or an answer not read, for
``FACEWIRE_STREAM_IDLE_TIMEOUT_S`` (1001), and a bug (1011, logged). The limits, the
upload budget, auth, metrics and saving are those of the other paths. As for a gRPC
stream, the next message is taken only while the budget has room and counts its size
until answered; uvicorn reads at most one message ahead of the one taken (it pauses
reading until the app takes each), and that one is not counted.
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
GOING_AWAY, INVALID_DATA, MESSAGE_TOO_BIG, INTERNAL_ERROR = 1001, 1007, 1009, 1011
#: A frame's options are a few short fields; the frame itself is the binary message.
OPTIONS_BYTES = 4096


class DetectionStream:
    """The endpoint: one per service, one ``serve`` per connection."""

    def __init__(self, settings: Settings, dataplane: DataPlane, uploads: UploadBudget) -> None:
        self.settings = settings
        self.dataplane = dataplane
        self.uploads = uploads

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            reason = await self._frames(websocket)
        except WebSocketDisconnect:
            return
        except Exception:  # a bug: logged, and the stream closed cleanly, as REST's 500
            log.exception("%s failed", STREAM_PATH)
            reason = INTERNAL_ERROR, "internal server error"
        if reason is not None:
            code, text = reason
            # A close reason is at most 123 bytes (RFC 6455 §5.5): cut by bytes.
            await websocket.close(code, text.encode()[:123].decode(errors="ignore"))

    async def _frames(self, websocket: WebSocket) -> tuple[int, str] | None:
        """Answer frames until the client leaves (None) or the stream must close (its
        code and reason). The next message is taken only while the upload budget has
        room, and counts its size until it is answered, as a gRPC stream's does."""
        idle = self.settings.stream_idle_timeout_s
        options = StreamFrame()
        while True:
            await self.uploads.room()
            try:
                async with asyncio.timeout(idle):
                    message = await websocket.receive()
            except TimeoutError:
                return GOING_AWAY, f"no frame in {idle:g} s"
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is not None:
                if len(text) > OPTIONS_BYTES:
                    return MESSAGE_TOO_BIG, f"a frame's options over {OPTIONS_BYTES} bytes"
                try:
                    options = StreamFrame.model_validate_json(text)
                except ValidationError as exc:
                    return INVALID_DATA, f"not a frame's options: {_first_error(exc)}"
                continue
            image = message.get("bytes") or b""
            lease = self.uploads.hold(len(image))
            try:
                answer = await self._answer(image, options)
                try:
                    async with asyncio.timeout(idle):  # a client that reads no answers
                        await websocket.send_text(answer)
                except TimeoutError:
                    return GOING_AWAY, f"answers not read in {idle:g} s"
            finally:
                lease.release()
            options = StreamFrame()  # the options applied to that one frame

    async def _answer(self, image: bytes, options: StreamFrame) -> str:
        try:
            with self.dataplane.metrics.track("rest-ws", Model.label(options.model)):
                result = await self.dataplane.detect(
                    DetectionRequest(
                        image=image,
                        model=Model.parse(options.model),
                        save=options.save,
                        frame_id=options.frame_id,
                        protocol="rest-ws",
                    )
                )
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
