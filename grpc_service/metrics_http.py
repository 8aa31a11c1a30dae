"""Serves the gRPC process's Prometheus metrics over HTTP (``FACEWIRE_GRPC_METRICS_PORT``).

gRPC has no ``GET /metrics`` of its own, so the registry the servicers count into is
exposed by prometheus_client's own HTTP server, on a thread of its own, beside the
gRPC port: Prometheus scrapes it as it scrapes the REST service.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from facewire.settings import Settings, url_host


class MetricsHttp:
    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        assert settings.grpc_metrics_port is not None
        self.host = settings.host
        self.port = settings.grpc_metrics_port  # the bound one once started
        self.registry = registry
        self.tls = settings.tls_cert_file, settings.tls_key_file
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls[0] is not None else "http"
        return f"{scheme}://{url_host(self.host)}:{self.port}/metrics"

    def start(self) -> None:
        cert, key = self.tls
        self._server = start_http_server(
            self.port,
            self.host,
            registry=self.registry,
            certfile=str(cert) if cert is not None else None,
            keyfile=str(key) if key is not None else None,
        )
        self.port = self._server[0].server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join()
            self._server = None
