"""The servers perf, soak and docker-bench measure, as child processes on free ports:
facewire's two services, and the bare references they are compared with.

Started through ``client.processes``, so that each one's resident memory and CPU can
be read from /proc, and each is stopped the same way (SIGTERM, the grace period, then
SIGKILL). The references are programs of the service packages (``python -m
rest_service.bare``, ``python -m grpc_service.bare``): the benchmark runs them, it does
not import them.
"""

from __future__ import annotations

import contextlib
import http.client
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from client.processes import Child, free_port
from client.readiness import ready


def _grpc_connects(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1.0)
        except grpc.FutureTimeoutError:
            return False
    return True


def _http_answers(url: str) -> bool:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=1.0)
    try:
        connection.request("GET", "/")
        connection.getresponse()  # any answer: the server is up (it starts its core first)
        return True
    except OSError:
        return False
    finally:
        connection.close()


def self_signed_certificate(folder: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``ip`` (and 127.0.0.1) and localhost, and its key
    (openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = ",".join(dict.fromkeys((f"IP:{ip}", "IP:127.0.0.1", "DNS:localhost")))
    subprocess.run(  # noqa: S603
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
         "-subj", "/CN=localhost", "-addext", f"subjectAltName={names}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def facewire_services(
    workdir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, str, Child, Child]]:
    """Both services, saving into ``workdir/storage``, logging into ``workdir``; ``env``
    adds or overrides their ``FACEWIRE_*`` settings. Stopped (drained) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    rest_port, grpc_port = free_port(), free_port()
    env = {
        "FACEWIRE_REST_PORT": str(rest_port),
        "FACEWIRE_GRPC_PORT": str(grpc_port),
        "FACEWIRE_STORAGE_DIR": str(workdir / "storage"),
        "FACEWIRE_LOG_LEVEL": "warning",
        **(env or {}),
    }
    rest = Child("rest_service", env=env, log=workdir / "rest.log")
    grpc_child = Child("grpc_service", env=env, log=workdir / "grpc.log")
    scheme = "https" if env.get("FACEWIRE_TLS_CERT_FILE") else "http"
    url, target = f"{scheme}://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    try:
        rest.wait_until(lambda: ready(url, target), "the services")
        yield url, target, rest, grpc_child
    finally:
        rest.stop()
        grpc_child.stop()


@contextlib.contextmanager
def bare_servers(workdir: Path, *, core: bool = False) -> Iterator[tuple[str, str, Child, Child]]:
    """A bare FastAPI app and a bare grpc.aio servicer (``--core``: serving the core)."""
    rest_port, grpc_port = free_port(), free_port()
    extra, tag = (["--core"], "-core") if core else ([], "")
    env = {"FACEWIRE_STORAGE_DIR": str(workdir / "bare-storage")}  # the core's; nothing is saved
    rest = Child("rest_service.bare", [str(rest_port), *extra], env,
                 log=workdir / f"bare-rest{tag}.log")  # fmt: skip
    bare_grpc = Child("grpc_service.bare", ["aio", str(grpc_port), *extra], env,
                      log=workdir / f"bare-grpc{tag}.log")  # fmt: skip
    scheme = "https" if env.get("FACEWIRE_TLS_CERT_FILE") else "http"
    url, target = f"{scheme}://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    try:
        rest.wait_until(lambda: _http_answers(url), "the bare REST server")
        bare_grpc.wait_until(lambda: _grpc_connects(target), "the bare gRPC server")
        yield url, target, rest, bare_grpc
    finally:
        rest.stop()
        bare_grpc.stop()


@contextlib.contextmanager
def bare_sync_grpc(workdir: Path) -> Iterator[tuple[str, Child]]:
    """grpcio's synchronous server running the core on its handler threads."""
    port = free_port()
    child = Child("grpc_service.bare", ["sync", str(port), "--core"],
                  log=workdir / "bare-grpc-sync-core.log")  # fmt: skip
    target = f"127.0.0.1:{port}"
    try:
        child.wait_until(lambda: _grpc_connects(target), "the bare synchronous gRPC server")
        yield target, child
    finally:
        child.stop()
