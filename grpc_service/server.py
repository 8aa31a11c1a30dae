"""Builds and runs the gRPC service: ``python -m grpc_service``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facewire import logs
from facewire.budget import UploadBudget
from facewire.dataplane import DataPlane
from facewire.settings import Settings, url_host
from facewire.storage import storage_problem
from facewire.tls import tls_problem
from facewire.v1 import face_detection_pb2 as pb
from grpc_service import oip, registration
from grpc_service.admission import Admission
from grpc_service.auth import BearerAuthInterceptor
from grpc_service.metrics_http import MetricsHttp
from grpc_service.servicer import FaceDetectionServicer
from grpc_service.streams import StreamSlots

log = logging.getLogger("facewire.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["FaceDetection"]
SERVICE_NAME = SERVICE.full_name
#: The health service's names: the server as a whole, and each service it serves.
HEALTH_NAMES = ("", SERVICE_NAME, oip.SERVICE_NAME)
#: Seconds between checks of readiness (storage writable) for the health status.
READINESS_INTERVAL_S = 5.0
CLOSE_TIMEOUT_S = 1.0
#: On SIGTERM, calls are taken and refused until a tick passes with none (at most
#: SETTLE_MAX_S, within the grace period), before grpc stops: see GrpcService._settle.
SETTLE_TICK_S = 0.05
SETTLE_MAX_S = 2.0
#: See server_options.
PENDING_CALLS = 100
PENDING_CALL_S = 1


@dataclass
class GrpcService:
    """A built, not yet started, gRPC server with its health servicer and bound port."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    dataplane: DataPlane
    port: int
    metrics: MetricsHttp | None = None
    #: Uploads held from a call's interception to its end: calls on their way to the core.
    uploads: UploadBudget | None = None

    _readiness: asyncio.Task[None] | None = None
    _serving: bool | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.dataplane.start)
        await self.server.start()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.start)
        await self._update_health()
        self._readiness = asyncio.create_task(self._follow_readiness())

    async def _update_health(self) -> None:
        """The health status from ``DataPlane.readiness_problem``: SERVING, or NOT_SERVING
        while (say) the storage folder cannot be written; transitions are logged."""
        problem = await asyncio.to_thread(self.dataplane.readiness_problem)
        was, self._serving = self._serving, problem is None
        if was == self._serving:
            return
        if problem is not None:
            log.warning("facewire gRPC not serving: %s", problem)
        elif was is not None:
            log.info("facewire gRPC serving again")
        status = health_pb2.HealthCheckResponse.NOT_SERVING
        if self._serving:
            status = health_pb2.HealthCheckResponse.SERVING
        for name in HEALTH_NAMES:
            await self.health.set(name, status)

    async def _follow_readiness(self) -> None:
        # A periodic check, as REST's /readyz makes on each probe: the storage folder can
        # become unwritable while serving (a remount, a full disk, changed ownership).
        while True:
            await asyncio.sleep(READINESS_INTERVAL_S)
            await self._update_health()

    async def stop(self, grace: float) -> bool:
        """Refuse new calls, give in-flight ones ``grace`` seconds, then stop the pipeline.
        False when a pipeline job is still running even so (see ``DataPlane.close``)."""
        if self._readiness is not None:
            self._readiness.cancel()
        await self.health.enter_graceful_shutdown()
        self.dataplane.drain()
        await self._settle(min(grace, SETTLE_MAX_S))
        await self.server.stop(grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        return await asyncio.to_thread(self.dataplane.close, CLOSE_TIMEOUT_S)

    async def _settle(self, limit: float) -> None:
        """Keep serving, refusing new work as UNAVAILABLE, until calls stop arriving.

        grpc.aio takes calls off grpc core's queue one at a time, and ``server.stop``
        makes core end those still queued with CANCELLED (grpc/grpc#41785): calls sent
        before the signal, which read to their clients as neither done nor refused.
        Taking them here first turns them into a clean UNAVAILABLE (safe to retry).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        seen = -1
        while loop.time() < deadline and (
            self.dataplane.arrived != seen
            or self.dataplane.inflight
            or (self.uploads is not None and self.uploads.reserved > 0)
        ):
            seen = self.dataplane.arrived
            await asyncio.sleep(SETTLE_TICK_S)  # a quiet tick: no call arrived in it


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """grpc's channel arguments for the service: message sizes and the HTTP/2 and
    connection limits that hold against hostile clients (docs/reliability.md), and the
    connection age that lets clients behind a connection balancer spread (docs/scaling.md)."""
    age = []
    if settings.grpc_max_connection_age_s is not None:
        age = [
            ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms",
             int(settings.grpc_max_connection_age_grace_s * 1000)),
        ]  # fmt: skip
    return [
        ("grpc.max_receive_message_length", settings.grpc_message_limit_bytes),
        ("grpc.max_send_message_length", settings.grpc_message_limit_bytes),
        ("grpc.so_reuseport", 0),  # a taken port must fail, not be shared silently
        ("grpc.max_concurrent_streams", settings.http2_max_concurrent_streams),
        *window_options(settings.grpc_stream_window_bytes),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.server_handshake_timeout_ms", int(settings.handshake_timeout_s * 1000)),
        # Calls grpc core holds until the Python server takes them: past this many, those
        # waiting over a second are cancelled, so that a flood of calls (Rapid Reset's
        # streams) cannot queue an ordinary call for seconds behind it.
        ("grpc.server.max_pending_requests", PENDING_CALLS),
        ("grpc.server_max_unrequested_time_in_server", PENDING_CALL_S),
        # grpc core's answer to pings it did not want (GOAWAY after two "strikes") leaves
        # the connection open with a thread spinning at 100 % CPU for as long as the peer
        # holds it (grpcio 1.85, docs/reliability.md). With no strikes, a ping flood costs
        # what it costs to answer, and a peer that reads no answers is paused by core's
        # cap on unanswered frames.
        ("grpc.http2.max_ping_strikes", 0),
        *age,
    ]


def window_options(window: int) -> list[tuple[str, int]]:
    """A call waiting for message budget has its message unread: a fixed window keeps
    grpc from taking more than ``window`` of it meanwhile. BDP probing would override
    the lookahead (grpc core's flow control sets the window from its BDP estimate, 4 MiB
    and up), so it goes off with it. Reading a message opens the window by at most
    1 MiB more, as data arrives. docs/performance.md has the round trips this costs."""
    if window == 0:
        return []  # grpc's own: BDP probing
    return [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", window)]


def create_server(settings: Settings, dataplane: DataPlane) -> GrpcService:
    """The server, bound (TLS only when the settings have a certificate and key)."""
    # Messages over the limit are refused by grpc from their length prefix, unread;
    # those under it are admitted into the upload budget before they are read.
    admission = Admission.from_settings(settings)
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if settings.auth_token is not None:
        interceptors.append(BearerAuthInterceptor(settings.auth_token.get_secret_value()))
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings))
    # Shared by both stream methods.
    streams = StreamSlots(settings.max_streams, settings.max_streams_per_connection)
    servicer = FaceDetectionServicer(dataplane, streams)
    registration.register(server, SERVICE, pb, servicer, admission)
    oip.register(oip.InferenceServicer(dataplane, streams), server, admission)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, oip.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{url_host(settings.host)}:{settings.grpc_port}"
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
        port = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
    else:
        port = server.add_insecure_port(address)
    metrics = None
    if settings.grpc_metrics_port is not None:
        metrics = MetricsHttp(settings, dataplane.metrics.registry)
    return GrpcService(server, health_servicer, dataplane, port, metrics, admission.budget)


async def serve(settings: Settings) -> None:
    service = create_server(settings, DataPlane.from_settings(settings, "grpc"))
    address = f"{url_host(settings.host)}:{service.port}" + (" (TLS)" if settings.tls else "")
    logs.log_startup(log, "facewire gRPC", address, settings, grpcio=grpc.__version__)
    await service.start()
    if service.metrics is not None:
        log.info("facewire gRPC metrics on %s", service.metrics.url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("facewire gRPC draining (grace %.1fs)", settings.grace_period_s)
    finished = await service.stop(settings.grace_period_s)
    log.info("facewire gRPC stopped")
    if not finished:
        # A pipeline job outlived the grace period; its thread cannot be interrupted, and
        # the interpreter would wait for it at exit. The calls were already ended.
        logging.shutdown()
        os._exit(0)


def main() -> None:
    settings = Settings()
    logs.configure(settings)
    # Here, in one line, rather than from the event loop.
    problem = tls_problem(settings) or storage_problem(settings, "grpc")
    if problem is not None:
        log.critical("facewire gRPC cannot start: %s", problem)
        raise SystemExit(1)
    asyncio.run(serve(settings))
