"""Protobuf over REST: ``/v1/detect`` reads and answers the gRPC service's own messages
(``facewire.v1.DetectRequest`` and ``DetectResponse``) when the request says
``Content-Type: application/x-protobuf``, so that the encoding can change while the
transport (HTTP/1.1, uvicorn, one kept-alive connection) stays the same.

Content negotiation, in full: a protobuf body is read as a ``DetectRequest`` (its
fields are the request; the query string's values are not used, though FastAPI still
checks them). The answer is protobuf when
``Accept`` names a protobuf type at a higher quality than JSON, or, with no ``Accept``
(or only ``*/*``), when the body was protobuf; otherwise it is JSON. Errors are always
the JSON error document, with their status.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from starlette.requests import Request

from facewire.errors import InvalidInput
from facewire.v1 import face_detection_pb2 as pb
from facewire.wire.v1_proto import MEDIA_TYPES

JSON = "application/json"


def body_type(request: Request) -> str | None:
    """The protobuf media type the body is sent as, or None (an image, or multipart)."""
    sent = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return sent if sent in MEDIA_TYPES else None


#: The answer's encoding follows ``Accept``: caches must key on it (RFC 9110 §12.5.5).
VARY = {"Vary": "Accept"}


def answer_type(request: Request, sent: str | None) -> str | None:
    """The protobuf media type to answer with, or None for JSON."""
    accept = _qualities(request.headers.get("accept", ""))
    named = {t: q for t, q in accept.items() if t != "*/*"}
    if not named:
        return sent
    best = max(MEDIA_TYPES, key=lambda t: named.get(t, 0.0))
    return best if named.get(best, 0.0) > named.get(JSON, 0.0) else None


def parse_request(body: bytes) -> pb.DetectRequest:
    try:
        return pb.DetectRequest.FromString(body)
    except DecodeError:
        raise InvalidInput(
            f"the body is not a valid {pb.DetectRequest.DESCRIPTOR.full_name}"
        ) from None


def _qualities(accept: str) -> dict[str, float]:
    """``Accept``'s media ranges and their q-values (RFC 9110 §12.5.1); a malformed
    q-value counts as 0, so that it never wins."""
    found: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        found[media.lower()] = max(quality, found.get(media.lower(), 0.0))
    return found
