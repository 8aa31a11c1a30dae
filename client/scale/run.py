"""The experiments of ``make scale``: replicas of both services on loopback, nginx in
front, and the facewire client driving them; requests per replica are read from each
replica's own ``/metrics``."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from client.processes import Child, free_port
from client.readiness import grpc_serving, rest_ready
from client.scale.nginx import Nginx
from client.transports import (
    GrpcStreamTransport,
    GrpcTransport,
    ProtocolName,
    RestTransport,
    Transport,
    TransportError,
)
from facewire.audit import audit


@dataclass
class Replica:
    protocol: str  # "rest" or "grpc"
    child: Child
    address: str  # REST: a URL; gRPC: host:port
    metrics_url: str
    storage: Path

    def answered(self) -> int:
        """Requests this replica has counted, whatever their outcome (its /metrics)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as reply:  # noqa: S310 (ours)
            text = reply.read().decode()
        return int(sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "facewire_requests"
            for sample in family.samples
            if sample.name == "facewire_requests_total"
        ))  # fmt: skip


@dataclass
class Fleet:
    rest: list[Replica]
    grpc: list[Replica]
    aged: list[Replica]  # gRPC replicas whose connections end after AGE_S
    nginx: Nginx

    def of(self, protocol: str) -> list[Replica]:
        return self.rest if protocol == "rest" else self.grpc


AGE_S = 1.0


def _replica(protocol: str, workdir: Path, name: str, env: dict[str, str]) -> Replica:
    port = free_port()
    storage = workdir / name
    settings = {"FACEWIRE_STORAGE_DIR": str(storage), "FACEWIRE_LOG_LEVEL": "warning",
                "FACEWIRE_THREADS": "1", **env}  # fmt: skip
    if protocol == "rest":
        settings["FACEWIRE_REST_PORT"] = str(port)
        child = Child("rest_service", env=settings, log=workdir / f"{name}.log")
        url = f"http://127.0.0.1:{port}"
        return Replica("rest", child, url, f"{url}/metrics", storage)
    metrics = free_port()
    settings |= {"FACEWIRE_GRPC_PORT": str(port), "FACEWIRE_GRPC_METRICS_PORT": str(metrics)}
    child = Child("grpc_service", env=settings, log=workdir / f"{name}.log")
    return Replica("grpc", child, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics",
                   storage)  # fmt: skip


@contextlib.contextmanager
def fleet(workdir: Path, replicas: int) -> Iterator[Fleet]:
    """``replicas`` of each service (and as many gRPC ones with a connection age), each
    saving into its own folder, with nginx in front; all stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        made: list[Replica] = []
        for i in range(replicas):
            made.append(_replica("rest", workdir, f"rest-{i}", {}))
            made.append(_replica("grpc", workdir, f"grpc-{i}", {}))
            made.append(_replica("grpc", workdir, f"grpc-aged-{i}", {
                "FACEWIRE_GRPC_MAX_CONNECTION_AGE_S": str(AGE_S),
                "FACEWIRE_GRPC_MAX_CONNECTION_AGE_GRACE_S": str(AGE_S)}))  # fmt: skip
        for replica in made:
            stack.callback(replica.child.stop)
        for replica in made:
            ready = (lambda r=replica: rest_ready(r.address)) if replica.protocol == "rest" \
                else (lambda r=replica: grpc_serving(r.address))  # fmt: skip
            replica.child.wait_until(ready, f"{replica.protocol} replica")
        rest = [r for r in made if r.protocol == "rest"]
        grpc = [r for r in made if r.protocol == "grpc" and "aged" not in r.storage.name]
        aged = [r for r in made if "aged" in r.storage.name]
        nginx = stack.enter_context(Nginx(
            workdir / "nginx",
            *([int(r.address.rsplit(":", 1)[1]) for r in group] for group in (rest, grpc, aged)),
        ))  # fmt: skip
        yield Fleet(rest, grpc, aged, nginx)


@dataclass
class Spread:
    """Requests per replica for one way of reaching them."""

    how: str
    protocol: str
    per_replica: list[int]
    errors: int

    @property
    def shares(self) -> list[float]:
        total = sum(self.per_replica) or 1
        return [n / total for n in self.per_replica]

    @property
    def even(self) -> bool:
        """Every replica within ±20 % of an equal share."""
        equal = 1 / len(self.per_replica)
        return all(abs(share - equal) <= 0.2 * equal for share in self.shares)


def _drive(transport: Transport, seconds: float, pause_s: float, frame: bytes) -> int:
    """Echo requests for ``seconds`` on one transport (one connection); errors counted."""
    errors = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            transport.detect(frame, model="echo", save=False, frame_id=str(n))
        except TransportError:
            errors += 1
        n += 1
        if pause_s:
            time.sleep(pause_s)  # paced: calls spread over the connection age
    return errors


def spread(how: str, protocol: ProtocolName, replicas: list[Replica], transport: Transport,
           seconds: float, frame: bytes, pause_s: float = 0.0) -> Spread:  # fmt: skip
    before = [r.answered() for r in replicas]
    try:
        errors = _drive(transport, seconds, pause_s, frame)
    finally:
        transport.close()
    after = [r.answered() for r in replicas]
    return Spread(how, protocol, [a - b for a, b in zip(after, before, strict=True)], errors)


def transport_to(protocol: ProtocolName, address: str) -> Transport:
    """One facewire client transport (one connection) to ``address``."""
    if protocol == "rest":
        return RestTransport(address, token=None, ca_file=None)
    if protocol == "grpc-stream":
        return GrpcStreamTransport(address, token=None, tls=False, ca_file=None)
    return GrpcTransport(address, token=None, tls=False, ca_file=None)


def spreads(fleet: Fleet, seconds: float, frame: bytes) -> list[Spread]:
    fronts = fleet.nginx.fronts
    rest_l7, rest_tcp = f"http://127.0.0.1:{fronts.rest_l7}", f"http://127.0.0.1:{fronts.rest_tcp}"
    grpc_l7, grpc_tcp = f"127.0.0.1:{fronts.grpc_l7}", f"127.0.0.1:{fronts.grpc_tcp}"
    aged_tcp = f"127.0.0.1:{fronts.grpc_aged_tcp}"
    direct_all = ",".join(r.address for r in fleet.grpc)
    return [
        spread("nginx proxy_pass (per request)", "rest", fleet.rest,
               transport_to("rest", rest_l7), seconds, frame),
        spread("nginx grpc_pass (per request)", "grpc", fleet.grpc,
               transport_to("grpc", grpc_l7), seconds, frame),
        spread("nginx stream (TCP, per connection)", "rest", fleet.rest,
               transport_to("rest", rest_tcp), seconds, frame),
        spread("nginx stream (TCP, per connection)", "grpc", fleet.grpc,
               transport_to("grpc", grpc_tcp), seconds, frame),
        spread("client round_robin over both addresses", "grpc", fleet.grpc,
               transport_to("grpc", direct_all), seconds, frame),
        spread(f"TCP, server connection age {AGE_S:g} s", "grpc", fleet.aged,
               transport_to("grpc", aged_tcp), max(seconds, 4 * AGE_S), frame, pause_s=0.005),
    ]  # fmt: skip


@dataclass
class ProxyCost:
    protocol: str
    direct_p50_ms: float
    proxied_p50_ms: float

    @property
    def cost_ms(self) -> float:
        return self.proxied_p50_ms - self.direct_p50_ms


def _p50(transport: Transport, requests: int, frame: bytes) -> float:
    times = []
    for n in range(requests):
        reply = transport.detect(frame, model="echo", save=False, frame_id=str(n))
        times.append(reply.latency_ms)
    return statistics.median(times)


def proxy_costs(fleet: Fleet, requests: int, rounds: int, frame: bytes) -> list[ProxyCost]:
    """Echo p50 direct to a replica against through nginx (L7), taking turns."""
    fronts = fleet.nginx.fronts
    paths: dict[ProtocolName, tuple[str, str]] = {
        "rest": (fleet.rest[0].address, f"http://127.0.0.1:{fronts.rest_l7}"),
        "grpc": (fleet.grpc[0].address, f"127.0.0.1:{fronts.grpc_l7}"),
    }
    costs = []
    for protocol, (direct, proxied) in paths.items():
        ways = {
            "direct": transport_to(protocol, direct),
            "proxied": transport_to(protocol, proxied),
        }
        medians: dict[str, list[float]] = {"direct": [], "proxied": []}
        try:
            for _ in range(rounds):
                for way, transport in ways.items():
                    medians[way].append(_p50(transport, requests, frame))
        finally:
            for transport in ways.values():
                transport.close()
        costs.append(ProxyCost(protocol, statistics.median(medians["direct"]),
                               statistics.median(medians["proxied"])))  # fmt: skip
    return costs


@dataclass
class Fault:
    protocol: str
    answered: int = 0
    saved: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def kill_one_under_load(
    fleet: Fleet, seconds: float, frame: bytes
) -> tuple[list[Fault], list[str]]:
    """REST, gRPC unary and a gRPC stream through nginx (L7), every request saving its
    frame; replica 0 of each service is killed (SIGKILL) a third of the way in. Then
    every replica drains, and every storage folder is audited."""
    fronts = fleet.nginx.fronts
    targets: dict[ProtocolName, str] = {
        "rest": f"http://127.0.0.1:{fronts.rest_l7}",
        "grpc": f"127.0.0.1:{fronts.grpc_l7}",
        "grpc-stream": f"127.0.0.1:{fronts.grpc_l7}",
    }
    faults = {p: Fault(p) for p in targets}
    stop = threading.Event()

    def load(protocol: ProtocolName) -> None:
        transport = transport_to(protocol, targets[protocol])
        n = 0
        while not stop.is_set():
            n += 1
            try:
                transport.detect(frame, model="haar", save=True, frame_id=f"{protocol}-{n}")
                faults[protocol].answered += 1
                faults[protocol].saved += 1
            except TransportError as exc:
                key = f"{exc.kind}: {exc.message}"[:90]
                faults[protocol].errors[key] = faults[protocol].errors.get(key, 0) + 1
                time.sleep(0.05)  # as a client backs off before retrying
        transport.close()

    threads = [threading.Thread(target=load, args=(p,)) for p in targets]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 3)  # the load runs a while before the kill
    fleet.rest[0].child.popen.kill()
    fleet.grpc[0].child.popen.kill()
    time.sleep(seconds * 2 / 3)  # and a while after
    stop.set()
    for thread in threads:
        thread.join(60)
    problems = []
    rows = 0
    for replica in [*fleet.rest, *fleet.grpc]:
        replica.child.stop()
        found = audit(replica.storage)
        problems += [f"{replica.storage.name}: {p}" for p in found.problems]
        rows += len(found.rows)
    answered = sum(f.saved for f in faults.values())
    if rows < answered:  # an answered save always has its row, killed replica or not
        problems.append(f"{answered} saves answered, {rows} rows stored")
    return list(faults.values()), problems
