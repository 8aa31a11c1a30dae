"""The one error hierarchy. Each transport maps it to its own status codes, once.

Messages are written for the client: they never carry stack traces or OpenCV text.
"""

from __future__ import annotations

import re


class FacewireError(Exception):
    """Base of every error a request can end with."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def kind(self) -> str:
        """A fixed label for metrics and logs, e.g. ``corrupt_image`` (never client text)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()


class InvalidInput(FacewireError):
    """The request is malformed: empty body, unknown model, bad frame_id, save with echo."""


class UnsupportedImage(InvalidInput):
    """The bytes are not a JPEG, PNG, WebP or BMP image."""


class CorruptImage(InvalidInput):
    """The bytes look like a supported image but cannot be decoded completely."""


class Forbidden(FacewireError):
    """The server does not allow what was asked: saving, when it is turned off."""


class NotFound(FacewireError):
    """What the request names does not exist here: an unknown model or model version."""


class LimitExceeded(FacewireError):
    """A size limit was exceeded (REST 413, gRPC RESOURCE_EXHAUSTED)."""


class PayloadTooLarge(LimitExceeded):
    """The upload is larger than ``max_upload_bytes``."""


class ImageTooLarge(LimitExceeded):
    """The image header declares more than ``max_image_pixels`` pixels."""


class ImageTooComplex(LimitExceeded):
    """A JPEG with more scans than anyone needs: each one costs a full decoding pass."""


class StorageError(FacewireError):
    """The frame or its CSV row could not be stored (disk full, no permission, ...)."""


class QuotaExceeded(StorageError):
    """The storage quota (``max_stored_images`` or ``max_stored_bytes``) is reached."""


class NotReady(FacewireError):
    """The service is starting or shutting down."""


class Overloaded(FacewireError):
    """More requests in flight than the service takes (``max_inflight``): retry shortly.
    Refusing beats queueing without bound, which only turns overload into memory use
    and into latency for everyone."""
