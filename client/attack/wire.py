"""Connections an attacker makes: TCP, TLS on top when the services speak it, and an
HTTP/2 client connection (the ``h2`` package) for the gRPC port."""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events


@dataclass(frozen=True)
class Target:
    """One service's port, and how to reach it."""

    service: str  # "rest" or "grpc"
    host: str
    port: int
    ca_file: Path | None  # TLS when set

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def tcp(self, timeout: float = 5.0, send_buffer: int | None = None) -> socket.socket:
        """A TCP connection, nothing sent; ``send_buffer`` sets its kernel send buffer."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if send_buffer is not None:  # before any byte is sent, so it bounds them all
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        return sock

    def connect(
        self, timeout: float = 5.0, alpn: str | None = None, send_buffer: int | None = None
    ) -> socket.socket:
        """A connection ready for application bytes: TLS done when the service has it."""
        sock = self.tcp(timeout, send_buffer)
        if self.ca_file is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn is not None:
            context.set_alpn_protocols([alpn])
        return context.wrap_socket(sock, server_hostname=self.host)


#: A unary gRPC call's request headers, as grpc's clients send them.
def grpc_headers(
    target: Target, path: str = "/facewire.v1.FaceDetection/Detect"
) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "https" if target.ca_file is not None else "http"),
        (":path", path),
        (":authority", target.authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


class H2Client:
    """An HTTP/2 connection that sends what it is told and notes what the server says:
    GOAWAY (and its error code), streams reset, whether it closed the connection."""

    def __init__(self, target: Target, timeout: float = 5.0) -> None:
        self.sock = target.connect(timeout, alpn="h2")
        config = h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.goaway: str | None = None
        self.resets = 0
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def read(self, timeout: float = 0.0) -> None:
        """Process what the server has sent, waiting at most ``timeout`` for it."""
        self.sock.settimeout(timeout if timeout > 0 else 0.0)
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, TimeoutError, ssl.SSLWantReadError):
                return
            except OSError:
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            try:
                events = self.conn.receive_data(data)
            except Exception:  # the server's frames after our own protocol errors
                self.closed = True
                return
            for event in events:
                if isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = getattr(event.error_code, "name", str(event.error_code))
                elif isinstance(event, h2.events.StreamReset):
                    self.resets += 1
            self.flush()
            self.sock.settimeout(0.0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
