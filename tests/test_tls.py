"""FACEWIRE_TLS_*: both services speak TLS only, with a certificate and key made here
(self-signed); the facewire client and the healthcheck trust it through the CA file."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from client.transports import (
    GrpcTransport,
    ProtocolName,
    RestTransport,
    Transport,
    TransportError,
    make_transport,
)
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.conftest import Fixture
from tests.servers import ROOT, ServiceProcess, grpc_server, rest_server, wait_for

TLS_ENV = ("FACEWIRE_TLS_CERT_FILE", "FACEWIRE_TLS_KEY_FILE", "FACEWIRE_TLS_CA_FILE")
REST_PROTOCOLS: tuple[ProtocolName, ...] = ("rest", "rest-v2")
GRPC_PROTOCOLS: tuple[ProtocolName, ...] = ("grpc", "grpc-stream", "grpc-v2")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def make_pair(folder: Path) -> Pair:
    """A self-signed certificate for 127.0.0.1 and localhost, with its key."""
    pair = Pair(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(pair.key), "-out", str(pair.cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return make_pair(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Another self-signed pair: trusting it is no reason to trust the services."""
    return make_pair(tmp_path_factory.mktemp("tls-other"))


@pytest.fixture(scope="module")
def tls_settings(settings: Settings, pair: Pair) -> Settings:
    return Settings(
        storage_dir=settings.storage_dir,
        threads=1,
        max_header_bytes=8192,
        tls_cert_file=pair.cert,
        tls_key_file=pair.key,
    )


@pytest.fixture(scope="module")
def tls_rest_url(tls_settings: Settings) -> Iterator[str]:
    with rest_server(tls_settings) as url:
        yield url


@pytest.fixture(scope="module")
def tls_grpc_target(tls_settings: Settings) -> Iterator[str]:
    with grpc_server(tls_settings) as target:
        yield target


@pytest.fixture(autouse=True)
def no_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client, the healthcheck and the services read these: only what a test sets
    counts (the subprocesses started here inherit os.environ)."""
    for name in (*TLS_ENV, "FACEWIRE_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def boxes(protocol: ProtocolName, rest_url: str, target: str, image: bytes, **kw: str) -> int:
    transport = make_transport(protocol, rest_url, target, token="", **kw)
    try:
        first = transport.detect(image, model="haar", save=False, frame_id="a")
        again = transport.detect(image, model="haar", save=False, frame_id="b")  # kept open
    finally:
        transport.close()
    assert len(first.result.boxes) == len(again.result.boxes)
    return len(first.result.boxes)


def refusal(transport: Transport, image: bytes) -> TransportError:
    try:
        with pytest.raises(TransportError) as refused:
            transport.detect(image, model="echo", save=False, frame_id="")
    finally:
        transport.close()
    return refused.value


def test_rest_over_tls_answers_a_client_that_trusts_the_certificate(
    tls_rest_url: str, pair: Pair, face: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_rest_url.startswith("https://")
    for protocol in REST_PROTOCOLS:
        assert boxes(protocol, tls_rest_url, "", face.data, ca_file=str(pair.cert)) == 1
    monkeypatch.setenv("FACEWIRE_TLS_CA_FILE", str(pair.cert))  # as the client reads it
    assert boxes("rest", tls_rest_url, "", face.data) == 1
    verify = ssl.create_default_context(cafile=pair.cert)
    with httpx.Client(base_url=tls_rest_url, verify=verify, timeout=30) as http:
        assert http.get("/readyz").status_code == 200


def test_rest_over_tls_keeps_the_header_limit(tls_rest_url: str, pair: Pair) -> None:
    """The guarded protocol (431, 408) sits above TLS: its limits hold over https too."""
    host, port = tls_rest_url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=pair.cert)
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"request headers over 8192 bytes" in answer


def test_rest_over_tls_serves_nothing_in_clear(tls_rest_url: str, face: Fixture) -> None:
    clear_url = tls_rest_url.replace("https://", "http://")
    refused = refusal(RestTransport(clear_url), face.data)
    assert refused.kind == "unreachable"
    host, port = clear_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):  # the server hangs up on what is not TLS
                answer += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/" not in answer


def test_rest_over_tls_is_refused_by_a_client_that_does_not_trust_it(
    tls_rest_url: str, stranger: Pair, face: Fixture
) -> None:
    for transport in (
        RestTransport(tls_rest_url),
        RestTransport(tls_rest_url, ca_file=stranger.cert),
    ):
        refused = refusal(transport, face.data)
        assert refused.kind == "unreachable"
        assert "CERTIFICATE_VERIFY_FAILED" in refused.message


def test_grpc_over_tls_answers_a_client_that_trusts_the_certificate(
    tls_grpc_target: str, pair: Pair, face: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for protocol in GRPC_PROTOCOLS:  # unary Detect, DetectStream and the v2 ModelInfer
        assert (
            boxes(protocol, "http://unused", tls_grpc_target, face.data, ca_file=str(pair.cert))
            == 1
        )
    monkeypatch.setenv("FACEWIRE_TLS_CA_FILE", str(pair.cert))  # the CA file alone means TLS
    assert boxes("grpc-stream", "http://unused", tls_grpc_target, face.data) == 1
    credentials = grpc.ssl_channel_credentials(pair.cert.read_bytes())
    with grpc.secure_channel(tls_grpc_target, credentials) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1
        stream = stub.DetectStream(iter([pb.DetectRequest(image=face.data)] * 2), timeout=30)
        assert [len(answer.boxes) for answer in stream] == [1, 1]


def test_grpc_over_tls_serves_nothing_in_clear(tls_grpc_target: str, face: Fixture) -> None:
    with grpc.insecure_channel(tls_grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refusal(GrpcTransport(tls_grpc_target), face.data).kind == "unreachable"


def test_grpc_over_tls_is_refused_by_a_client_that_does_not_trust_it(
    tls_grpc_target: str, stranger: Pair, face: Fixture
) -> None:
    for credentials in (
        grpc.ssl_channel_credentials(),  # the system's trust store
        grpc.ssl_channel_credentials(stranger.cert.read_bytes()),
    ):
        with grpc.secure_channel(tls_grpc_target, credentials) as channel:
            stub = pb_grpc.FaceDetectionStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Detect(pb.DetectRequest(image=face.data), timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value.details())
    # make_transport: an https:// REST URL means TLS for gRPC too, here without the CA.
    untrusting = make_transport("grpc", "https://127.0.0.1:1", tls_grpc_target, token="")
    assert refusal(untrusting, face.data).kind == "unreachable"


def healthcheck(target: str, env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "-m", "grpc_service.healthcheck", target, "--timeout", "20"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
    ).returncode


def test_the_healthcheck_speaks_tls_when_the_service_does(tls_grpc_target: str, pair: Pair) -> None:
    service_env = {"FACEWIRE_TLS_CERT_FILE": str(pair.cert), "FACEWIRE_TLS_KEY_FILE": str(pair.key)}
    assert healthcheck(tls_grpc_target, service_env) == 0  # trusts the service's own cert
    assert healthcheck(tls_grpc_target, {}) == 1  # plaintext gets no answer


def test_settings_take_a_certificate_only_with_its_key(pair: Pair) -> None:
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        Settings(tls_cert_file=pair.cert)


def test_the_services_say_they_listen_over_tls(tmp_path: Path, pair: Pair, face: Fixture) -> None:
    env = {
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
        "FACEWIRE_THREADS": "1",
        "FACEWIRE_TLS_CERT_FILE": str(pair.cert),
        "FACEWIRE_TLS_KEY_FILE": str(pair.key),
        "FACEWIRE_GRPC_METRICS_PORT": "0",
    }
    with ServiceProcess("facewire.serve", env) as both:
        rest_url, target = both.both_addresses()
        assert rest_url.startswith("https://")
        assert f"gRPC listening on {target} (TLS)" in both.output
        verify = ssl.create_default_context(cafile=pair.cert)
        metrics = both.wait_for_output(r"metrics on (https://[\d.]+:\d+/metrics)").group(1)
        assert "facewire_requests_total" in httpx.get(metrics, verify=verify, timeout=10).text
        with pytest.raises(httpx.TransportError):
            httpx.get(metrics.replace("https://", "http://"), timeout=5)  # nothing in clear

        def rest_ready() -> bool:
            try:
                return httpx.get(f"{rest_url}/readyz", verify=verify, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(rest_ready, what="REST over TLS ready")
        ca = str(pair.cert)
        assert boxes("rest", rest_url, target, face.data, ca_file=ca) == 1
        assert boxes("grpc", rest_url, target, face.data, ca_file=ca) == 1
        # Docker's REST HEALTHCHECK: https with the service's settings, nothing in clear.
        port = {"FACEWIRE_REST_PORT": rest_url.rsplit(":", 1)[1]}
        assert rest_healthcheck({**env, **port}) == 0
        assert rest_healthcheck(port) == 1
        assert both.stop() == 0, both.output


def rest_healthcheck(env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACEWIRE_")}
    done = subprocess.run(
        [sys.executable, "-m", "rest_service.healthcheck"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode


@pytest.mark.parametrize("module", ["rest_service", "grpc_service"])
@pytest.mark.parametrize("problem", ["missing certificate", "key that is no key"])
def test_an_unusable_certificate_stops_start_up_in_one_line(
    module: str, problem: str, tmp_path: Path, pair: Pair
) -> None:
    if problem == "missing certificate":
        cert, key, named = tmp_path / "missing.pem", pair.key, tmp_path / "missing.pem"
    else:
        cert, key, named = pair.cert, pair.cert, pair.cert
    env = {
        **os.environ,
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
        "FACEWIRE_TLS_CERT_FILE": str(cert),
        "FACEWIRE_TLS_KEY_FILE": str(key),
    }
    ran = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode != 0
    assert str(named) in ran.stderr
    assert "cannot start" in ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout
    assert "listening on" not in ran.stderr + ran.stdout


def closed_within(address: tuple[str, int], deadline_s: float) -> float:
    """Open a TCP connection, send nothing (no ClientHello, no preface), and time how
    long the server takes to close it; fails if it is still open after ``deadline_s``."""
    with socket.create_connection(address, timeout=deadline_s) as sock:
        started = time.monotonic()
        try:
            data = sock.recv(1024)
        except TimeoutError:
            pytest.fail(f"{address} kept a connection with no handshake past {deadline_s} s")
        except ConnectionResetError:
            data = b""
        assert data == b"", data
        return time.monotonic() - started


@pytest.mark.parametrize("service", ["rest", "grpc"])
def test_a_tls_handshake_that_never_starts_is_closed_by_the_deadline(
    service: str, settings: Settings, pair: Pair
) -> None:
    """FACEWIRE_HANDSHAKE_TIMEOUT_S: without it asyncio (REST) waits 60 s and grpc 120 s."""
    quick = Settings(storage_dir=settings.storage_dir, threads=1, tls_cert_file=pair.cert,
                     tls_key_file=pair.key, handshake_timeout_s=1.0)  # fmt: skip
    start = rest_server if service == "rest" else grpc_server
    with start(quick) as address:
        host_port = address.removeprefix("https://").rsplit(":", 1)
        took = closed_within((host_port[0], int(host_port[1])), deadline_s=15)
    assert took >= 0.5, took  # closed by the deadline, not refused at once
