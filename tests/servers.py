"""Real services for tests: in-process on ephemeral loopback ports, or as subprocesses."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from client.processes import Child
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


class ServiceProcess(Child):
    """``python -m <module>`` with FACEWIRE_* settings (the shared ``Child``), run from
    the checkout's root; knows the addresses its log announces."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        args: tuple[str, ...] = (),
        unset: tuple[str, ...] = (),
    ) -> None:
        super().__init__(module, args, env, unset=unset, cwd=ROOT)
        self.process = self.popen

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines(keepends=True)

    def address(self, timeout: float = 30.0) -> str:
        """host:port from the 'listening on' start-up line."""
        match = self.wait_for_output(r"listening on (?:https?://)?([\d.]+:\d+)", timeout)
        return match.group(1)

    def both_addresses(self, timeout: float = 30.0) -> tuple[str, str]:
        """(REST URL, gRPC target) of ``facewire.serve``, from its children's log lines."""
        rest = self.wait_for_output(r"REST listening on (https?://[\d.]+:\d+)", timeout)
        grpc = self.wait_for_output(r"gRPC listening on ([\d.]+:\d+)", timeout)
        return rest.group(1), grpc.group(1)

    def stop(self, grace: float = 30.0, signum: int = signal.SIGTERM) -> int:
        """SIGTERM and the exit status; unlike ``Child.stop``, never SIGKILL: a test
        that stops a service wants to see it drain, and fails if it does not."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
        return self.popen.wait(grace)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        Child.stop(self)  # whatever the test did: SIGTERM, then SIGKILL after the grace
