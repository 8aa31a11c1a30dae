"""Builds and runs the gRPC service: ``python -m grpc_service``."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facewire import logs
from facewire.dataplane import DataPlane
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from grpc_service.servicer import FaceDetectionServicer

log = logging.getLogger("facewire.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FaceDetection"].full_name
# Room for the fields around the image; the image itself is held to max_upload_bytes by
# the core, so a frame just over the limit gets a clean per-frame error on DetectStream.
ENVELOPE_BYTES = 64 * 1024


@dataclass
class GrpcService:
    """A built, not yet started, gRPC server with its health servicer and bound port."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    dataplane: DataPlane
    port: int

    async def start(self) -> None:
        await asyncio.to_thread(self.dataplane.start)
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """Refuse new calls, give in-flight ones ``grace`` seconds, then stop the pipeline."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await asyncio.to_thread(self.dataplane.close)


def create_server(settings: Settings, dataplane: DataPlane) -> GrpcService:
    max_message = settings.max_upload_bytes + ENVELOPE_BYTES
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            ("grpc.so_reuseport", 0),  # a taken port must fail, not be shared silently
        ]
    )
    pb_grpc.add_FaceDetectionServicer_to_server(FaceDetectionServicer(dataplane), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    port = server.add_insecure_port(f"{host}:{settings.grpc_port}")
    return GrpcService(server, health_servicer, dataplane, port)


async def serve(settings: Settings) -> None:
    service = create_server(settings, DataPlane.from_settings(settings, "grpc"))
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    logs.log_startup(
        log, "facewire gRPC", f"{host}:{service.port}", settings, grpcio=grpc.__version__
    )
    await service.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("facewire gRPC draining (grace %.1fs)", settings.grace_period_s)
    await service.stop(settings.grace_period_s)
    log.info("facewire gRPC stopped")


def main() -> None:
    settings = Settings()
    logs.configure(settings)
    asyncio.run(serve(settings))
