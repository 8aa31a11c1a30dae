"""Real services for tests: in-process on ephemeral loopback ports, or as subprocesses."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import httpx

from facewire.dataplane import DataPlane
from facewire.settings import Settings
from grpc_service.server import GrpcService, create_server
from rest_service.app import create_app
from rest_service.server import DrainingServer, bind_socket, uvicorn_config

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def rest_ready(base_url: str) -> bool:
    """True once the REST service at ``base_url`` answers /readyz with 200."""
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def rest_server(settings: Settings, dataplane: DataPlane | None = None) -> Iterator[str]:
    """A REST service in a thread (on ``dataplane``, or one made from ``settings``);
    yields its base URL (https:// when the settings have a TLS certificate and key)."""
    app = create_app(settings, dataplane or DataPlane.from_settings(settings, "rest"))
    server = DrainingServer(uvicorn_config(settings, app))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), what="REST start-up")
        assert server.started, "the REST server failed to start"
        yield f"{'https' if settings.tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def grpc_server(settings: Settings, dataplane: DataPlane | None = None) -> Iterator[str]:
    """A gRPC service on its own event loop in a thread (on ``dataplane``, or one made
    from ``settings``); yields its target."""
    settings = settings.model_copy(update={"grpc_port": 0})  # never a fixed port in tests
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro_factory: Callable[[], object]) -> object:
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro_factory(), loop)  # type: ignore[arg-type]
        return future.result(timeout=30)

    async def build() -> GrpcService:
        service = create_server(settings, dataplane or DataPlane.from_settings(settings, "grpc"))
        await service.start()
        return service

    service = run(build)
    assert isinstance(service, GrpcService)
    try:
        yield f"127.0.0.1:{service.port}"
    finally:
        run(lambda: service.stop(grace=5))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        loop.close()


class ServiceProcess:
    """``python -m <module>`` with FACEWIRE_* settings; knows its address from its log."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        unset: tuple[str, ...] = (),
    ) -> None:
        self.module = module
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        for name in unset:
            full_env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.daemon = True
        self._reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, pattern: str, timeout: float = 30.0, since: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the output from offset ``since`` on."""

        def find() -> re.Match[str] | None:
            match = re.compile(pattern).search(self.output, since)
            if match is None and self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited before {pattern!r}:\n{self.output}")
            return match

        return wait_for(find, timeout, f"{pattern!r} from {self.module}")

    def address(self, timeout: float = 30.0) -> str:
        """host:port from the 'listening on' start-up line."""

        def find() -> str | None:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.output}")
            match = re.search(r"listening on (?:https?://)?([\d.]+:\d+)", self.output)
            return match.group(1) if match else None

        return wait_for(find, timeout, f"{self.module} to listen")

    def both_addresses(self, timeout: float = 30.0) -> tuple[str, str]:
        """(REST URL, gRPC target) of ``facewire.serve``, from its children's log lines."""
        rest = self.wait_for_output(r"REST listening on (https?://[\d.]+:\d+)", timeout)
        grpc = self.wait_for_output(r"gRPC listening on ([\d.]+:\d+)", timeout)
        return rest.group(1), grpc.group(1)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        self._reader.join(timeout=5)
        # A reader still blocked means a grandchild holds the pipe open; closing it now
        # would wait for that read forever. The daemon reader ends with the pipe.
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # let facewire.serve stop its own children first
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close()
