"""Runs the REST app under Granian: HTTP/1.1 and HTTP/2 on one port.

``FACEWIRE_REST_SERVER=granian python -m rest_service``. The app is the one uvicorn
serves, built in each Granian worker process by the same factory
(``rest_service.app:app_from_env``), so that the HTTP version is the only difference
between ``rest`` and ``rest-h2`` on this server. In clear, Granian answers HTTP/1.1 and
h2c with prior knowledge on one port (``HTTPModes.auto``); with TLS it offers both by
ALPN. Granian was chosen over Hypercorn by measurement (``python -m client.bench.asgi``,
docs/performance.md).

The service's limits, as Granian names them (docs/configuration.md lists the ones
Granian has no counterpart for):

- ``header_timeout_s``: HTTP/1's ``header_read_timeout``.
- ``max_header_bytes``: HTTP/1's read buffer (at least Granian's 8 KiB floor) and
  HTTP/2's ``max_headers_size``.
- ``http2_max_concurrent_streams``: HTTP/2's ``max_concurrent_streams``, as gRPC's.
- ``max_connections``: Granian's ``backpressure``, which caps requests being served per
  worker (Granian has no connection cap); the rest wait in the listen backlog.
- ``grace_period_s``: how long a worker may drain before it is killed.
"""

from __future__ import annotations

import logging
import math

import fastapi
from granian import __version__ as granian_version
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server.mp import MPServer

from facewire import logs
from facewire.settings import Settings, url_host

log = logging.getLogger("facewire.rest")

APP_FACTORY = "rest_service.app:app_from_env"
#: Granian refuses an HTTP/1 read buffer under 8 KiB.
MIN_HTTP1_BUFFER = 8192


def granian_server(settings: Settings, port: int) -> MPServer:
    """The Granian server for ``settings``, listening on ``port`` (not 0: Granian binds
    its own socket and does not report the port it got). Worker processes, as Granian
    runs on a GIL build of Python (its ``Granian`` is this class there)."""
    return MPServer(
        APP_FACTORY,
        factory=True,
        address=settings.host,
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        loop=Loops.auto,  # uvloop where installed, as uvicorn picks it
        workers=settings.workers,
        backpressure=settings.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=math.ceil(settings.header_timeout_s * 1000),
            max_buffer_size=max(settings.max_header_bytes, MIN_HTTP1_BUFFER),
        ),
        http2_settings=HTTP2Settings(
            max_concurrent_streams=settings.http2_max_concurrent_streams,
            max_headers_size=settings.max_header_bytes,
        ),
        workers_kill_timeout=math.ceil(settings.grace_period_s),
        log_level=LogLevels(settings.log_level),
        ssl_cert=settings.tls_cert_file,  # both None (plain http) or both set
        ssl_key=settings.tls_key_file,
    )


def serve(settings: Settings, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then drain (the workers run the app's shutdown)."""
    address = f"{'https' if settings.tls else 'http'}://{url_host(settings.host)}:{port}"
    logs.log_startup(log, "facewire REST", address, settings,
                     fastapi=fastapi.__version__, granian=granian_version)  # fmt: skip
    granian_server(settings, port).serve()
    log.info("facewire REST stopped")
