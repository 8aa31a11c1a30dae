"""uvicorn's httptools protocol with the two limits it lacks: on header size and on the
time the headers take. Without them one client can hold a connection forever by
trickling a request line, or make the server buffer megabytes of headers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class _HeadersTooLarge(Exception):
    """Raised from a parser callback: httptools stops, and uvicorn answers and closes."""


class GuardedConfig(uvicorn.Config):
    """uvicorn's configuration plus the two limits (a module-level class, so that the
    worker processes of FACEWIRE_WORKERS > 1 can unpickle it)."""

    def __init__(
        self, app: Any, *, max_header_bytes: int, header_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        if isinstance(config, GuardedConfig):
            self.max_header_bytes = config.max_header_bytes
            self.header_timeout_s = config.header_timeout_s

    _header_bytes = 0
    _too_large = False
    _deadline: asyncio.TimerHandle | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._answer_and_close(431, f"request headers over {self.max_header_bytes} bytes")
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self._answer_and_close(
                408, f"request headers not complete in {self.header_timeout_s:g} s"
            )

    def _answer_and_close(self, status: int, message: str) -> None:
        body = message.encode()
        head = b"".join(
            [
                STATUS_LINE[status],
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
        )
        self.transport.write(head + body)
        self.transport.close()
