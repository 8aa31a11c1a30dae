"""Reads the image from a request: the raw body, or the multipart field ``file``.

The format is always sniffed from the bytes, so a wrong or missing Content-Type with
valid image bytes is accepted. Over-limit bodies are read and discarded up to a bound so
that the connection can serve the next request; beyond that bound it is closed. A body
is read only once the upload budget (facewire.budget) has room for it, and counts
against it until the request ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from facewire.budget import UploadBudget
from facewire.errors import FacewireError, InvalidInput, PayloadTooLarge
from facewire.imaging import sniff_format
from facewire.settings import Settings

# Room for multipart boundaries and part headers around the image itself.
MULTIPART_OVERHEAD = 64 * 1024


class UndrainedUpload(PayloadTooLarge):
    """Too large to even read and discard: answered with ``Connection: close``."""


class SlowUpload(FacewireError):
    """The body did not arrive within ``body_timeout_s``: 408, and the connection closes
    (the rest of the body is never read)."""


class ClientGone(FacewireError):
    """The client closed the connection mid-upload; nobody is left to answer."""


@asynccontextmanager
async def uploaded_image(
    request: Request, settings: Settings, budget: UploadBudget
) -> AsyncIterator[bytes]:
    """The image, held (and counted in ``budget``) for the block."""
    limit = settings.max_upload_bytes
    async with uploaded_body(request, limit + MULTIPART_OVERHEAD, settings, budget) as body:
        if sniff_format(body) is not None or not _is_multipart(request):
            yield body  # the pipeline checks the limit and tells "not an image" apart
        else:
            yield await _multipart_file(request, body, limit)


@asynccontextmanager
async def uploaded_body(
    request: Request, cap: int, settings: Settings, budget: UploadBudget
) -> AsyncIterator[bytes]:
    """The body (see read_body), read once ``budget`` has room for what it may hold (its
    Content-Length, or ``cap`` when chunked), counted for its real size until the block
    ends. No room within the budget's wait: BudgetSpent (503, the body unread)."""
    declared = _declared_length(request)
    _refuse_undrainable(declared, cap, settings)  # at once, not after waiting for room
    lease = await budget.reserve(min(declared, cap) if declared is not None else cap)
    try:
        body = await read_body(request, cap, settings)
        lease.resize(len(body))
        yield body
    finally:
        lease.release()


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _refuse_undrainable(declared: int | None, cap: int, settings: Settings) -> None:
    read_limit = max(settings.read_limit_bytes, cap)
    if declared is not None and declared > read_limit:
        raise UndrainedUpload(_too_large(declared, settings.max_upload_bytes))


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_body(request: Request, cap: int, settings: Settings) -> bytes:
    """The body when it is at most ``cap`` bytes; PayloadTooLarge otherwise. Up to the
    read limit is read and thrown away (the connection stays usable); past that,
    reading stops (UndrainedUpload: the connection must close)."""
    limit, read_limit = settings.max_upload_bytes, max(settings.read_limit_bytes, cap)
    _refuse_undrainable(_declared_length(request), cap, settings)
    chunks: list[bytes] = []  # joined once at the end (a bytearray cost two copies)
    received = 0
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > read_limit:
                    raise UndrainedUpload(_too_large(received, limit))
                if received <= cap and chunk:
                    chunks.append(chunk)
    except TimeoutError:
        raise SlowUpload(f"request body not complete in {settings.body_timeout_s:g} s") from None
    except ClientDisconnect:
        raise ClientGone("the client closed the connection mid-upload") from None
    if received > cap:
        raise PayloadTooLarge(_too_large(received, limit))
    return b"".join(chunks)  # one bytes chunk comes back as itself, not copied


def _too_large(size: int, limit: int) -> str:
    return f"upload too large: {size} bytes or more, over the limit of {limit}"


async def _multipart_file(request: Request, body: bytes, limit: int) -> bytes:
    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, replay(), max_files=1, max_fields=16, max_part_size=limit
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("multipart body has no 'file' field with the image")
        return await upload.read()
    finally:
        await form.close()
