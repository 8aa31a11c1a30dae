"""Our services and the bare servers as child processes, on free loopback ports.

``make perf`` and ``make soak`` start what they measure through these, so both read a
service's resident memory the same way (from /proc) and stop it the same way (SIGTERM,
then the grace period, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from client.lab import ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A server process of ours, with its resident memory readable from /proc."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(  # noqa: S603 (our interpreter, our modules)
                [sys.executable, *argv], env={**os.environ, **env}, stdout=out, stderr=out
            )

    def wait_until(self, is_ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not is_ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.popen.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} was not ready after {timeout:.0f}s; see {self.log}")
            time.sleep(0.1)  # polling another process's readiness

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        kib = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        return kib / 1024

    def cpu_s(self) -> float:
        """CPU seconds the process has used so far, all threads, user and system."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """SIGTERM, 30 s to drain, then SIGKILL; returns the exit status (0: drained)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def _grpc_connects(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1.0)
        except grpc.FutureTimeoutError:
            return False
    return True


@contextlib.contextmanager
def facewire_services(
    workdir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, str, Child, Child]]:
    """Both services, saving into ``workdir/storage``, logging into ``workdir``; ``env``
    adds or overrides their ``FACEWIRE_*`` settings. Stopped (drained) on exit."""
    rest_port, grpc_port = free_port(), free_port()
    env = {
        "FACEWIRE_REST_PORT": str(rest_port),
        "FACEWIRE_GRPC_PORT": str(grpc_port),
        "FACEWIRE_STORAGE_DIR": str(workdir / "storage"),
        "FACEWIRE_LOG_LEVEL": "warning",
        **(env or {}),
    }
    rest = Child(["-m", "rest_service"], env, workdir / "rest.log")
    grpc_child = Child(["-m", "grpc_service"], env, workdir / "grpc.log")
    url, target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    try:
        rest.wait_until(lambda: ready(url, target), "the REST service")
        yield url, target, rest, grpc_child
    finally:
        rest.stop()
        grpc_child.stop()


@contextlib.contextmanager
def bare_servers(workdir: Path, *, core: bool = False) -> Iterator[tuple[str, str, Child, Child]]:
    rest_port, grpc_port = free_port(), free_port()
    extra, tag = (["--core"], "-core") if core else ([], "")
    module = ["-m", "client.bench.bare"]
    env = {"FACEWIRE_STORAGE_DIR": str(workdir / "bare-storage")}  # the core's; nothing is saved
    rest = Child([*module, "rest", str(rest_port), *extra], env, workdir / f"bare-rest{tag}.log")
    bare_grpc = Child(
        [*module, "grpc", str(grpc_port), *extra], env, workdir / f"bare-grpc{tag}.log"
    )
    url, target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
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
    argv = ["-m", "client.bench.bare", "grpc-sync", str(port), "--core"]
    child = Child(argv, {}, workdir / "bare-grpc-sync-core.log")
    target = f"127.0.0.1:{port}"
    try:
        child.wait_until(lambda: _grpc_connects(target), "the bare synchronous gRPC server")
        yield target, child
    finally:
        child.stop()


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
