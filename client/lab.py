"""``make run``: both services plus the client, as one command.

With a display: start the services (or use the ones already running), open the GUI on
``--source auto``, and stop the services when the window closes. With no display: say
so, and run a short headless comparison on the sample source instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from client.__main__ import main as client_main
from client.processes import Child
from client.readiness import ready
from facewire.settings import Settings, url_host

log = logging.getLogger("facewire.lab")
START_TIMEOUT = 60.0


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def addresses(settings: Settings) -> tuple[str, str]:
    host = url_host("127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host)
    scheme = "https" if settings.tls else "http"
    return f"{scheme}://{host}:{settings.rest_port}", f"{host}:{settings.grpc_port}"


@contextmanager
def services(rest_url: str, grpc_target: str) -> Iterator[None]:
    """Both services, ready; started here (and stopped after) unless already running."""
    if ready(rest_url, grpc_target):
        log.info("using the services already running at %s and %s", rest_url, grpc_target)
        yield
        return
    log.info("starting both services (python -m facewire.serve)")
    rest, grpc_port = urlsplit(rest_url), grpc_target.rsplit(":", 1)[-1]
    env = {"FACEWIRE_REST_PORT": str(rest.port or 80), "FACEWIRE_GRPC_PORT": grpc_port}
    child = Child("facewire.serve", env=env, terminal=True)  # its log, live, to the user
    try:
        child.wait_until(lambda: ready(rest_url, grpc_target), "the services", START_TIMEOUT)
    except RuntimeError as error:
        child.stop()
        raise SystemExit(f"facewire: {error}") from None
    try:
        yield
    finally:
        child.stop(grace=30, signum=signal.SIGINT)  # as Ctrl-C would: both drain


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
