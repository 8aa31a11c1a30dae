"""One settings object for both services, read from ``FACEWIRE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
#: REST keeps reading up to this many times ``max_upload_bytes`` so that an oversized
#: upload gets a clean 413 and the connection goes on; anything larger is cut off.
OVERSIZE_READ_FACTOR = 4
#: gRPC reads an upload's envelope too (frame_id, model, the v2 tensor's fields), not 4×:
#: grpc holds a message whole, in about two and a half copies, before our code sees it.
GRPC_ENVELOPE_BYTES = 64 * 1024

LogLevel = Literal["debug", "info", "warning", "error"]
DecodeMode = Literal["colour", "gray", "reduced"]


class Settings(BaseSettings):
    """Everything a service needs to know, passed down from ``__main__`` to the factories."""

    model_config = SettingsConfigDict(env_prefix="FACEWIRE_", frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Address both services listen on.")
    rest_port: int = Field(8001, ge=0, le=65535, description="REST port (0 picks a free one).")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    grpc_metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Where the gRPC service serves its Prometheus metrics over HTTP "
        "(GET /metrics; https with the TLS pair); 0 picks a free one; unset: not served. "
        "REST serves /metrics on its own port.",
    )
    storage_dir: Path | None = Field(
        None, description="Where saved frames and records.csv go; default storage/<protocol>."
    )

    auth_token: SecretStr | None = Field(
        None,
        description="Shared token: every request but the health checks must send "
        "'Authorization: Bearer <token>' (REST) or 'authorization' metadata (gRPC).",
    )

    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate chain: both services then speak TLS only (https, "
        "secure gRPC). Needs tls_key_file.",
    )
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file.")
    tls_ca_file: Path | None = Field(
        None,
        description="Client side: PEM certificates to trust for the services (a self-signed "
        "one, say); default: the system's trust store.",
    )

    max_upload_bytes: PositiveInt = Field(8 * MiB, description="Largest accepted image upload.")
    max_image_pixels: PositiveInt = Field(
        40_000_000, description="Largest accepted width × height, checked from the header."
    )
    max_frame_id_length: PositiveInt = Field(128, description="Longest accepted frame_id.")

    scale_factor: float = Field(1.1, gt=1.0, description="Haar detectMultiScale scaleFactor.")
    min_neighbors: int = Field(5, ge=0, description="Haar detectMultiScale minNeighbors.")
    min_size: PositiveInt = Field(30, description="Haar minSize (square, in 300×300 pixels).")
    cascade_path: Path | None = Field(
        None, description="Cascade XML; default OpenCV's haarcascade_frontalface_default.xml."
    )
    save_jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of saved frames.")
    save_enabled: bool = Field(
        True, description="False: refuse every save (403 / PERMISSION_DENIED); nothing is written."
    )

    max_stored_images: PositiveInt | None = Field(
        None, description="Storage quota: saves beyond this many stored images are refused (507)."
    )
    max_stored_bytes: PositiveInt | None = Field(
        None,
        description="Storage quota: saves that would take stored images past this many "
        "bytes are refused (507).",
    )

    threads: PositiveInt | None = Field(
        None, description="Pipeline threads per process; default: the number of CPUs."
    )
    opencv_threads: int = Field(
        1,
        ge=-1,
        description="cv2.setNumThreads value; -1 leaves OpenCV's own choice (a thread per "
        "core). Default 1: facewire spreads a lone request over idle cores itself.",
    )
    split_detection: bool = Field(
        True, description="Share a request's detection with idle pipeline threads, by scale."
    )
    decode_mode: DecodeMode = Field(
        "colour",
        description="How an unsaved frame is decoded: 'colour' (the specified pipeline: "
        "full colour, crop, 300×300 INTER_AREA, then gray), or, opt-in and faster but not "
        "always the same boxes, 'gray' (straight to grayscale) or 'reduced' (grayscale JPEG "
        "at 1/2, 1/4 or 1/8 scale); their measured agreement is in docs/performance.md.",
    )
    max_inflight: PositiveInt = Field(
        64,
        description="Requests one service process holds at once, queued or running; "
        "beyond it, 503 (REST) or RESOURCE_EXHAUSTED (gRPC) at once.",
    )
    max_streams: PositiveInt = Field(
        64, description="gRPC: streams open at once; beyond it, RESOURCE_EXHAUSTED."
    )
    max_streams_per_connection: PositiveInt = Field(
        32,
        description="gRPC: streams one connection may hold open at once; beyond it, "
        "RESOURCE_EXHAUSTED (so one client cannot take every stream slot).",
    )
    stream_idle_timeout_s: PositiveFloat = Field(
        60.0,
        description="gRPC: seconds a stream may go without a message before it is ended "
        "(DEADLINE_EXCEEDED), giving back its slot.",
    )
    max_connections: PositiveInt = Field(
        1000,
        description="Connections one service process keeps open; beyond it, new ones are "
        "closed at once (established ones are served on).",
    )
    max_pipelined_requests: PositiveInt = Field(
        16,
        description="REST: requests one connection may have queued behind the one being "
        "answered (HTTP/1.1 pipelining); beyond it, the connection is closed.",
    )
    handshake_timeout_s: PositiveFloat = Field(
        10.0,
        description="Seconds a new connection may take over its TLS handshake (and, on "
        "gRPC, the HTTP/2 preface); else it is closed.",
    )
    upload_budget_bytes: PositiveInt = Field(
        24 * MiB,
        description="Upload bytes one service process reads or holds at once, over all "
        "connections: a request reserves what it may hold (REST: its Content-Length; gRPC: "
        "the message limit) before it is read, then its real size, until it ends; one "
        "that finds no room within upload_budget_wait_s is refused (503 / "
        "RESOURCE_EXHAUSTED), unread. Uploads over an eighth of it may together hold three "
        "quarters of it; the rest is kept for ordinary frames. gRPC calls reserve their "
        "connection's largest message so far (the message limit on a new connection); "
        "streams read their next frame only while there is room.",
    )
    upload_budget_wait_s: float = Field(
        1.0, ge=0, description="Seconds a request may wait for room in the upload budget."
    )
    http2_max_concurrent_streams: PositiveInt = Field(
        100,
        description="gRPC (and REST on Granian): HTTP/2 streams one connection may open at "
        "once (SETTINGS_MAX_CONCURRENT_STREAMS); beyond it, the stream is refused.",
    )
    grpc_stream_window_bytes: int = Field(
        2 * 1024 * 1024,
        ge=0,
        description="gRPC: the HTTP/2 window each stream and the connection start with "
        "(grpc.http2.lookahead_bytes with BDP probing off): what a client may send before "
        "the server has read it, so what an unread upload can hold in the server. At least "
        "a round trip times the rate (50 ms x 100 Mbit/s = 625 KB), or uploads wait a "
        "round trip for the window to open. 0: grpc's own (BDP probing; 4 MiB and up).",
    )
    grpc_max_connection_age_s: PositiveFloat | None = Field(
        None,
        description="gRPC: seconds a connection lives before the server asks the client to "
        "reconnect (GOAWAY; gRFC A9, grpc.max_connection_age_ms), so that clients behind a "
        "connection balancer re-resolve and spread; calls then get grpc_max_connection_age_"
        "grace_s to finish. Unset: connections live as long as their clients keep them.",
    )
    grpc_max_connection_age_grace_s: PositiveFloat = Field(
        30.0, description="gRPC: seconds in-flight calls get after the connection's age."
    )
    workers: PositiveInt = Field(1, description="REST worker processes (uvicorn workers).")
    rest_server: Literal["uvicorn", "granian"] = Field(
        "uvicorn",
        description="REST: the ASGI server. uvicorn (HTTP/1.1) is the default; granian "
        "serves the same app over HTTP/1.1 and HTTP/2 on one port (h2c with prior "
        "knowledge in clear, ALPN with TLS): docs/configuration.md maps the limits.",
    )
    max_header_bytes: PositiveInt = Field(
        64 * 1024, description="REST: request line and headers at most this long (else 431)."
    )
    header_timeout_s: PositiveFloat = Field(
        10.0, description="REST: seconds a request's headers may take to arrive (else 408)."
    )
    body_timeout_s: PositiveFloat = Field(
        30.0,
        description="Seconds a request's body (REST: else 408) or, once admitted, a gRPC "
        "call's message (else DEADLINE_EXCEEDED) may take to arrive.",
    )
    keep_alive_s: PositiveFloat = Field(
        5.0, description="REST: seconds an idle keep-alive connection stays open."
    )
    grace_period_s: PositiveFloat = Field(
        10.0, description="Seconds in-flight requests get to finish on SIGTERM/SIGINT."
    )
    opentelemetry: bool = Field(
        False,
        description="REST: FastAPI's native OpenTelemetry (traces, metrics and logs to the "
        "global providers you configure); off by default, /metrics is Prometheus.",
    )
    log_level: LogLevel = Field("info", description="Logging level; 'debug' logs every request.")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self

    @property
    def tls(self) -> bool:
        """Whether the services speak TLS (a certificate and key are set)."""
        return self.tls_cert_file is not None

    @property
    def read_limit_bytes(self) -> int:
        """The most REST reads for one request (see OVERSIZE_READ_FACTOR)."""
        return self.max_upload_bytes * OVERSIZE_READ_FACTOR

    @property
    def grpc_message_limit_bytes(self) -> int:
        """The largest gRPC message read: an upload and its envelope. grpc refuses a
        larger one from its length prefix, before buffering it (RESOURCE_EXHAUSTED)."""
        return self.max_upload_bytes + GRPC_ENVELOPE_BYTES

    def storage_dir_for(self, protocol: str) -> Path:
        """The storage folder for one service: the configured one, or ``storage/<protocol>``."""
        return self.storage_dir if self.storage_dir is not None else Path("storage") / protocol


def url_host(host: str) -> str:
    """``host`` as it goes into a URL or a gRPC target: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host
