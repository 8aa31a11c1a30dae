"""uvicorn's httptools protocol with the limits it lacks: on header size, on the time
the headers take (counted from the connection's start, so a connection that sends
nothing is closed too), and on the number of connections; and, with TLS, a deadline on
the handshake. Without them one client can hold a connection forever by trickling a
request line or by sending nothing, make the server buffer megabytes of headers, or
open connections until the process runs out of file descriptors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class _HeadersTooLarge(Exception):
    """Raised from a parser callback: httptools stops, and uvicorn answers and closes."""


class _TooManyPipelined(Exception):
    """Raised from a parser callback: httptools stops, and the connection is closed."""


class GuardedConfig(uvicorn.Config):
    """uvicorn's configuration plus the limits (a module-level class, so that the
    worker processes of FACEWIRE_WORKERS > 1 can unpickle it)."""

    def __init__(
        self,
        app: Any,
        *,
        max_header_bytes: int,
        header_timeout_s: float,
        max_connections: int,
        handshake_timeout_s: float,
        max_pipelined: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.max_pipelined = max_pipelined
        self.handshake_timeout_s = handshake_timeout_s

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """uvicorn's loop, whose TLS servers get our handshake deadline, and the same
        deadline for a TLS close: uvicorn passes neither to ``create_server``, so
        asyncio's 60 s and 30 s would apply. A peer that never completes the close
        (it keeps sending, as a flood does) held each closed connection's buffers
        (256 KiB in asyncio's TLS protocol) for those 30 s: 400 such connections in 6 s
        grew the service by 100 MiB."""
        make_loop = super().get_loop_factory()
        if make_loop is None or self.ssl_certfile is None:
            return make_loop
        deadline = self.handshake_timeout_s

        def loop_with_deadline() -> asyncio.AbstractEventLoop:
            loop = make_loop()
            create_server = loop.create_server

            async def create_tls_server(*args: Any, **kwargs: Any) -> asyncio.Server:
                kwargs.setdefault("ssl_handshake_timeout", deadline)
                kwargs.setdefault("ssl_shutdown_timeout", deadline)
                return await create_server(*args, **kwargs)

            loop.create_server = create_tls_server  # type: ignore[method-assign]
            return loop

        return loop_with_deadline


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    header_timeout_s = 10.0
    max_connections = 1000
    max_pipelined = 16

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        if isinstance(config, GuardedConfig):
            self.max_header_bytes = config.max_header_bytes
            self.header_timeout_s = config.header_timeout_s
            self.max_connections = config.max_connections
            self.max_pipelined = config.max_pipelined

    _header_bytes = 0
    _too_large = False
    _too_many_pipelined = False
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Over the cap: closed before anything is read; established ones go on.
            transport.close()
            return
        # Until the first request's headers are complete, as for every later request.
        self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._cancel_deadline()
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
        # uvicorn queues pipelined requests without a bound (and reads on after each
        # answer): thousands written at once on one connection cost megabytes and
        # seconds of the event loop. Clients do not pipeline that deep.
        if len(self.pipeline) > self.max_pipelined:
            self._too_many_pipelined = True
            raise _TooManyPipelined

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._too_many_pipelined:
            # No answer can be sent ahead of the queued ones: the connection just ends,
            # at once (abort: close() would wait to flush answers nobody reads).
            self.pipeline.clear()
            self.transport.abort()
        elif self._too_large:
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
