"""``make run``: both services plus the client, as one command.

With a display: start the services (or use the ones already running), open the GUI on
``--source auto``, and stop the services when the window closes. With no display: say
so, and run a short headless comparison on the sample source instead. With a network
(``--network PROFILE`` and friends, root only) the services run behind that link, in a
network namespace of their own.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

from client.__main__ import main as client_main
from client.network import linkcheck
from client.network.namespace import NetworkError, ServiceNetwork, preflight, service_network
from client.network.options import add_network_options, profile_from
from client.network.profiles import ProfileError
from client.processes import Child, free_port
from client.readiness import ready, rest_ready
from client.transports import REST_H2_URL_VARIABLE
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
def services(
    rest_url: str,
    grpc_target: str,
    network: ServiceNetwork | None = None,
    env: dict[str, str] | None = None,
    rest_h2: bool = False,
) -> Iterator[tuple[str, str]]:
    """Both services, ready, and their addresses: the ones given when services already
    answer there (and no network is asked for), else started here and stopped after:
    on loopback, or inside ``network``'s namespace on the ports given.

    ``rest_h2``: when starting them, start a second REST service beside them, on Granian
    (HTTP/1.1 and HTTP/2, on a free port), for the ``rest-h2`` transports, and name it
    in $FACEWIRE_REST_H2_URL while the block runs (load processes started in the block
    inherit it)."""
    if network is None and ready(rest_url, grpc_target):
        log.info("using the services already running at %s and %s", rest_url, grpc_target)
        yield rest_url, grpc_target
        return
    rest, grpc_port = urlsplit(rest_url), grpc_target.rsplit(":", 1)[-1]
    settings = {"FACEWIRE_REST_PORT": str(rest.port or 80), "FACEWIRE_GRPC_PORT": grpc_port,
                **(env or {})}  # fmt: skip
    prefix: list[str] = []
    if network is not None:
        settings["FACEWIRE_HOST"] = network.service_ip
        prefix = network.prefix
        rest_url = f"{rest.scheme}://{network.service_ip}:{rest.port or 80}"
        grpc_target = f"{network.service_ip}:{grpc_port}"
        log.info("starting both services behind %s", network.profile.describe())
    else:
        log.info("starting both services (python -m facewire.serve)")
    child = Child("facewire.serve", env=settings, terminal=True, prefix=prefix)  # its log, live
    with ExitStack() as stack:
        stack.callback(child.stop, grace=30, signum=signal.SIGINT)  # as Ctrl-C: both drain
        try:
            child.wait_until(lambda: ready(rest_url, grpc_target), "the services", START_TIMEOUT)
            if rest_h2:
                stack.enter_context(_rest_on_granian(rest_url, settings, prefix))
        except RuntimeError as error:
            raise SystemExit(f"facewire: {error}") from None
        yield rest_url, grpc_target


@contextmanager
def _rest_on_granian(rest_url: str, env: dict[str, str], prefix: list[str]) -> Iterator[str]:
    """A second REST service, on Granian, beside the one at ``rest_url`` (same host)."""
    parts = urlsplit(rest_url)
    port = free_port()  # free here; a namespace of the run's own has nothing listening
    url = f"{parts.scheme}://{parts.netloc.rsplit(':', 1)[0]}:{port}"
    log.info("starting a REST service on Granian (HTTP/1.1 and HTTP/2) for rest-h2: %s", url)
    child = Child("rest_service", env={**env, "FACEWIRE_REST_PORT": str(port),
                                       "FACEWIRE_REST_SERVER": "granian"},
                  terminal=True, prefix=prefix)  # fmt: skip
    previous = os.environ.get(REST_H2_URL_VARIABLE)
    try:
        child.wait_until(lambda: rest_ready(url), "the REST service on Granian", START_TIMEOUT)
        os.environ[REST_H2_URL_VARIABLE] = url
        yield url
    finally:
        if previous is None:
            os.environ.pop(REST_H2_URL_VARIABLE, None)
        else:
            os.environ[REST_H2_URL_VARIABLE] = previous
        child.stop(grace=30, signum=signal.SIGINT)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m client.lab",
        description="make run: both services and the client; other options go to the client "
        "(python -m client --help)",
    )
    add_network_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args, client_args = parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        profile = profile_from(args)
        preflight(profile, args.link_engine)
        network_context = service_network(profile, args.link_engine)
        with network_context as network:
            rest_url, grpc_target = addresses(Settings())
            # A REST service on Granian beside them, for the GUI's key 6 (REST over HTTP/2).
            with services(rest_url, grpc_target, network, rest_h2=True) as (rest_url, grpc_target):
                if network is not None:
                    linkcheck.record(network, lambda line: log.info("%s", line))
                label = "loopback" if network is None else profile.label(network.engine)
                common = ["--rest-url", rest_url, "--grpc-target", grpc_target, "--link", label,
                          *client_args]  # fmt: skip
                if has_display():
                    return client_main(["--source", "auto", *common])
                log.info("no display (DISPLAY is not set): running a short headless "
                         "comparison instead")  # fmt: skip
                return client_main(["--headless", "--source", "sample", "--frames", "100",
                                    *common])  # fmt: skip
    except (ProfileError, NetworkError) as error:
        print(f"facewire: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
