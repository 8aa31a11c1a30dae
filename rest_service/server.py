"""Runs the REST service under uvicorn (or, with ``FACEWIRE_REST_SERVER=granian``, under
Granian: ``rest_service.granian_server``): ``python -m rest_service``."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

import fastapi
import uvicorn
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from facewire import logs
from facewire.dataplane import DataPlane
from facewire.settings import Settings, url_host
from facewire.storage import storage_problem
from facewire.tls import tls_problem
from rest_service.app import create_app
from rest_service.protocol import GuardedConfig

log = logging.getLogger("facewire.rest")


class DrainingServer(uvicorn.Server):
    """A uvicorn server that exits 0 after draining on SIGTERM/SIGINT.

    Plain uvicorn re-raises the captured signal once it has drained, so the process
    would end with status -15; a drained shutdown is a clean one.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts, so that port 0 resolves and the real port is logged."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)  # uvicorn's worker processes share it
    return sock


def uvicorn_config(settings: Settings, app: str | ASGIApp) -> uvicorn.Config:
    """The one uvicorn configuration: the service, its tests and the bare server of P4.
    With a TLS certificate and key it serves https only (uvicorn wraps the socket in TLS
    below the protocol class, so GuardedHttpToolsProtocol is unchanged)."""
    return GuardedConfig(
        app,
        factory=isinstance(app, str),
        workers=settings.workers,
        log_config=None,  # ours, from facewire.logs
        access_log=False,  # one debug line per request comes from the app instead
        timeout_graceful_shutdown=int(settings.grace_period_s + 0.999),
        timeout_keep_alive=settings.keep_alive_s,  # a float works, whatever the stubs say
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
        handshake_timeout_s=settings.handshake_timeout_s,
        max_pipelined=settings.max_pipelined_requests,
        server_header=False,
        # /v1/stream (rest_service/stream.py): websockets' sans-I/O protocol, a message
        # at most an upload and its envelope (as gRPC's), no compression (JPEG frames do
        # not shrink; it would cost CPU and open a decompression bomb).
        ws="websockets-sansio",
        ws_max_size=settings.grpc_message_limit_bytes,
        ws_per_message_deflate=False,
        ssl_certfile=settings.tls_cert_file,  # both None (plain http) or both set
        ssl_keyfile=settings.tls_key_file,
    )


def main() -> None:
    settings = Settings()
    logs.configure(settings)
    problem = tls_problem(settings) or storage_problem(settings, "rest")
    if problem is not None:
        log.critical("facewire REST cannot start: %s", problem)
        raise SystemExit(1)
    sock = bind_socket(settings.host, settings.rest_port)
    host, port = sock.getsockname()[:2]
    if settings.rest_server == "granian":
        # Granian binds its own socket: this one only resolved port 0 (a race with
        # another process taking the port meanwhile is possible, and would fail loudly).
        sock.close()
        try:
            from rest_service.granian_server import serve
        except ImportError:  # the asgi extra's
            log.critical("FACEWIRE_REST_SERVER=granian needs Granian: pip install 'facewire[asgi]'")
            raise SystemExit(1) from None
        serve(settings, port)
        return
    dataplane = None
    if settings.workers > 1:
        # Worker processes are spawned and build their own app from the environment.
        config = uvicorn_config(settings, "rest_service.app:app_from_env")
    else:
        dataplane = DataPlane.from_settings(settings, "rest")
        config = uvicorn_config(settings, create_app(settings, dataplane))
    logs.log_startup(
        log,
        "facewire REST",
        f"{'https' if settings.tls else 'http'}://{url_host(host)}:{port}",
        settings,
        fastapi=fastapi.__version__,
        uvicorn=uvicorn.__version__,
    )
    if settings.workers > 1:
        Multiprocess(config, sockets=[sock]).run()  # drains its workers on SIGTERM, returns
    else:
        DrainingServer(config).run(sockets=[sock])
    log.info("facewire REST stopped")
    if dataplane is not None and not dataplane.close(timeout=0):
        # A pipeline job outlived the grace period; its thread cannot be interrupted, and
        # the interpreter would wait for it at exit. The requests were already answered.
        logging.shutdown()
        os._exit(0)
