"""The services the claims' experiments run against, all at once, each as users start
them (``python -m facewire.serve``): on loopback in clear, on loopback with TLS (a
self-signed certificate made for the run), and, with root, behind links in network
namespaces: one not shaped (so the veth counters give the bytes each request puts on
the wire), one rate-limited, and two with a round trip (in clear and with TLS), made by
netem where the kernel has it and by wirefilter where it does not. Each shaped link is
checked before the experiments (its measured round trip is what they count in).
Beside the clear services on loopback, the unshaped link and the delayed one, the REST
service runs on Granian too (FACEWIRE_REST_SERVER=granian), for the factorial.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from client.bench.servers import self_signed_certificate
from client.network import linkcheck
from client.network.namespace import NetworkError, ServiceNetwork, preflight, require_root
from client.network.profiles import Profile, ProfileError, resolve
from client.processes import Child, free_port
from client.readiness import answers
from client.transports import ProtocolName, Transport, TransportError, make_transport
from client.transports.rest import RestTransport

#: The rate-limited link: WebPageTest's FIOS (20 Mbit/s down, 5 up, 4 ms).
RATE_LIMITED = "fios"
#: A link that shapes nothing: a veth pair whose counters see every byte on the wire.
UNSHAPED = Profile("veth", None, None, source="a veth pair, not shaped")
#: A round trip alone, bandwidth not shaped (the 40 ms of comcast's "WIFI (good)"), for
#: what connection reuse, multiplexing, idle connections and loss do across one.
#: The REST service on Granian's port inside a namespace (nothing else listens there).
GRANIAN_PORT = 8002
DELAYED = Profile("delayed", None, None, rtt_ms=40, source="comcast's WIFI (good) round trip")


@dataclass
class Place:
    """One running pair of services: where to reach them, and how."""

    name: str
    rest_url: str
    grpc_target: str
    ca_file: Path | None = None
    network: ServiceNetwork | None = None
    describe: str = ""
    #: The link's round trip as its check measured it (None: loopback).
    rtt_ms: float | None = None
    #: A second REST service beside these, on Granian (HTTP/1.1 and HTTP/2 on one
    #: port), for the factorial and the HPACK comparison; None where none runs.
    granian_url: str | None = None

    def transport(self, protocol: ProtocolName, *, new_connection: bool = False) -> Transport:
        return make_transport(protocol, self.rest_url, self.grpc_target, token="",
                              ca_file=self.ca_file, new_connection=new_connection)  # fmt: skip


@dataclass
class Stage:
    places: dict[str, Place] = field(default_factory=dict)
    #: What could not be set up, and why (an experiment that needs it says so).
    missing: dict[str, str] = field(default_factory=dict)
    #: What makes the shaped links' delay (netem or wirefilter), and each one's check.
    engine: str | None = None
    checks: dict[str, dict[str, object]] = field(default_factory=dict)


def _answers(place: Place) -> bool:
    return answers(place.rest_url, place.grpc_target, place.ca_file)


@contextlib.contextmanager
def _services(place: Place, env: dict[str, str], folder: Path,
              granian_port: int | None = None) -> Iterator[Place]:  # fmt: skip
    """The services at ``place``; with ``granian_port``, the REST service on Granian
    beside them, on that port (``place.granian_url``)."""
    prefix = place.network.prefix if place.network is not None else []
    log = folder / f"services-{place.name}.log"
    with contextlib.ExitStack() as stack:
        child = stack.enter_context(Child("facewire.serve", env=env, prefix=prefix, log=log))
        child.wait_until(lambda: _answers(place), f"the services ({place.name})", 90)
        if granian_port is not None:
            host = place.rest_url.rsplit(":", 1)[0]
            place.granian_url = f"{host}:{granian_port}"
            granian_env = {**env, "FACEWIRE_REST_SERVER": "granian",
                           "FACEWIRE_REST_PORT": str(granian_port)}  # fmt: skip
            granian = stack.enter_context(Child(
                "rest_service", env=granian_env, prefix=prefix,
                log=folder / f"granian-{place.name}.log"))  # fmt: skip
            granian.wait_until(lambda: _granian_answers(place), f"Granian ({place.name})", 90)
        yield place


def _granian_answers(place: Place) -> bool:
    assert place.granian_url is not None
    transport = RestTransport(place.granian_url, token="", http_version="2")
    try:
        transport.detect(b"ready?", model="echo", save=False, frame_id="")
        return True
    except TransportError:
        return False
    finally:
        transport.close()


@contextlib.contextmanager
def stage(rate_limited: Profile | None = None) -> Iterator[Stage]:
    """Every place, up for the block; the links and services removed after."""
    built = Stage()
    with (
        tempfile.TemporaryDirectory(prefix="facewire-claims-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(tmp)
        base = {"FACEWIRE_STORAGE_DIR": str(folder / "storage"), "FACEWIRE_LOG_LEVEL": "warning"}
        for name, tls in (("loopback", False), ("loopback TLS", True)):
            rest, grpc = free_port(), free_port()
            env = {**base, "FACEWIRE_REST_PORT": str(rest), "FACEWIRE_GRPC_PORT": str(grpc)}
            place = Place(name, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc}",
                          describe="loopback")  # fmt: skip
            if tls:
                cert, key = self_signed_certificate(folder)
                env |= {"FACEWIRE_TLS_CERT_FILE": str(cert), "FACEWIRE_TLS_KEY_FILE": str(key)}
                place.rest_url = place.rest_url.replace("http://", "https://")
                place.ca_file, place.describe = cert, "loopback, TLS (self-signed, RSA 2048)"
            granian = None if tls else free_port()
            built.places[name] = stack.enter_context(_services(place, env, folder, granian))
        try:
            require_root()
            built.engine = preflight(DELAYED)
        except (NetworkError, ProfileError) as error:
            for name in ("veth", "rate-limited", "delayed", "delayed TLS"):
                built.missing[name] = str(error)
        else:
            limited = rate_limited or resolve(RATE_LIMITED)
            delay = built.engine or "auto"
            links = [
                ("veth", UNSHAPED, "netem", False),
                ("rate-limited", limited, delay, False),
                ("delayed", DELAYED, delay, False),
                ("delayed TLS", DELAYED, delay, True),
            ]
            for index, (name, profile, engine, tls) in enumerate(links, start=1):
                network = stack.enter_context(ServiceNetwork(profile, index, engine))
                host = network.service_ip
                env = {**base, "FACEWIRE_HOST": host,
                       "FACEWIRE_REST_PORT": "8001", "FACEWIRE_GRPC_PORT": "50051"}  # fmt: skip
                place = Place(name, f"http://{host}:8001", f"{host}:50051", network=network,
                              describe=f"{profile.describe()}; {network.engine}")  # fmt: skip
                if tls:
                    own = folder / name.replace(" ", "-")
                    own.mkdir(exist_ok=True)
                    cert, key = self_signed_certificate(own, host)
                    env |= {"FACEWIRE_TLS_CERT_FILE": str(cert), "FACEWIRE_TLS_KEY_FILE": str(key)}
                    place.rest_url = place.rest_url.replace("http://", "https://")
                    place.ca_file = cert
                    place.describe += ", TLS (self-signed, RSA 2048)"
                if profile.shaped:
                    checked = linkcheck.check(network)
                    built.checks[name] = checked.as_dict()
                    place.rtt_ms = checked.round_trip.measured_ms
                granian = None if tls or name == "rate-limited" else GRANIAN_PORT
                built.places[name] = stack.enter_context(_services(place, env, folder, granian))
        yield built


def wire_bytes(network: ServiceNetwork) -> tuple[int, int]:
    """Bytes the host's end of the link has sent and received so far (every header,
    TCP/IP included): the veth's own counters."""
    stats = Path(f"/sys/class/net/{network.host_device}/statistics")
    return int((stats / "tx_bytes").read_text()), int((stats / "rx_bytes").read_text())
