"""``make run``: both services plus the client, as one command.

With a display: start the services (or use the ones already running), open the GUI on
``--source auto``, and stop the services when the window closes. With no display: say
so, and run a short headless comparison on the sample source instead.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from client.__main__ import main as client_main
from facewire.settings import Settings, url_host
from facewire.tls import trusted_file
from grpc_service.healthcheck import check as grpc_serving
from grpc_service.healthcheck import credentials

log = logging.getLogger("facewire.lab")
START_TIMEOUT = 60.0


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def addresses(settings: Settings) -> tuple[str, str]:
    host = url_host("127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host)
    scheme = "https" if settings.tls else "http"
    return f"{scheme}://{host}:{settings.rest_port}", f"{host}:{settings.grpc_port}"


def ready(rest_url: str, grpc_target: str) -> bool:
    settings = Settings()
    trusted = trusted_file(settings)  # what the healthcheck trusts: TLS follows settings
    verify = ssl.create_default_context(cafile=trusted) if trusted else True
    try:
        rest_ok = httpx.get(f"{rest_url}/readyz", timeout=1.0, verify=verify).status_code == 200
    except httpx.TransportError:
        rest_ok = False
    return rest_ok and grpc_serving(grpc_target, 1.0, credentials(settings))


@contextmanager
def services(rest_url: str, grpc_target: str) -> Iterator[None]:
    """Both services, ready; started here (and stopped after) unless already running."""
    if ready(rest_url, grpc_target):
        log.info("using the services already running at %s and %s", rest_url, grpc_target)
        yield
        return
    log.info("starting both services (python -m facewire.serve)")
    rest, grpc_port = urlsplit(rest_url), grpc_target.rsplit(":", 1)[-1]
    env = {
        **os.environ,
        "FACEWIRE_REST_PORT": str(rest.port or 80),
        "FACEWIRE_GRPC_PORT": grpc_port,
    }
    child = subprocess.Popen([sys.executable, "-m", "facewire.serve"], env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready(rest_url, grpc_target):
            if child.poll() is not None:
                raise SystemExit(f"the services exited with {child.returncode} while starting")
            if time.monotonic() > deadline:
                raise SystemExit(f"the services were not ready after {START_TIMEOUT:.0f}s")
            time.sleep(0.2)  # polling readiness of another process
        yield
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    rest_url, grpc_target = addresses(Settings())
    common = ["--rest-url", rest_url, "--grpc-target", grpc_target, *sys.argv[1:]]
    with services(rest_url, grpc_target):
        if has_display():
            return client_main(["--source", "auto", *common])
        log.info("no display (DISPLAY is not set): running a short headless comparison instead")
        return client_main(["--headless", "--source", "sample", "--frames", "100", *common])


if __name__ == "__main__":
    sys.exit(main())
