"""Start-up commands and shutdown: drain in-flight work, refuse new work, exit 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.readiness import rest_ready
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.conftest import Fixture
from tests.servers import ROOT, ServiceProcess, wait_for


def service_env(tmp_path: Path) -> dict[str, str]:
    return {
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
        "FACEWIRE_THREADS": "1",  # one thread: in-flight requests queue up behind each other
        "FACEWIRE_GRACE_PERIOD_S": "20",
    }


def raw_http_request(address: str, body: bytes) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST /v1/detect HTTP/1.1\r\nHost: {address}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def read_status(sock: socket.socket) -> int:
    with sock, sock.makefile("rb") as f:
        return int(f.readline().split()[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_rest_drains_in_flight_requests_and_exits_0(
    tmp_path: Path, face: Fixture, signum: signal.Signals
) -> None:
    with ServiceProcess("rest_service", service_env(tmp_path)) as service:
        address = service.address()
        wait_for(lambda: rest_ready(f"http://{address}"), what="REST ready")
        sockets = [raw_http_request(address, face.data) for _ in range(6)]
        first = read_status(sockets.pop(0))  # the server is busy with the rest now
        service.process.send_signal(signum)
        statuses = [first] + [read_status(s) for s in sockets]
        assert statuses == [200] * 6
        assert service.process.wait(30) == 0, service.output
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(tuple(address.split(":")), timeout=5)  # type: ignore[arg-type]
    assert "facewire REST stopped" in service.output


def test_grpc_drains_in_flight_calls_and_exits_0(tmp_path: Path, face: Fixture) -> None:
    with ServiceProcess("grpc_service", service_env(tmp_path)) as service:
        target = service.address()
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = pb_grpc.FaceDetectionStub(channel)
            go_on = threading.Event()

            def requests(n: int) -> Iterator[pb.DetectRequest]:
                yield pb.DetectRequest(image=face.data, frame_id=f"{n}-0")
                go_on.wait(30)
                yield pb.DetectRequest(image=face.data, frame_id=f"{n}-1")

            streams = [stub.DetectStream(requests(n), timeout=60) for n in range(3)]
            # Each stream's first answer proves it is live on the server.
            assert [next(s).frame_id for s in streams] == ["0-0", "1-0", "2-0"]
            service.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "draining" in service.output, what="drain to begin")
            go_on.set()  # in-flight streams go on during the grace period
            assert [[r.frame_id for r in s] for s in streams] == [["0-1"], ["1-1"], ["2-1"]]
            assert service.process.wait(30) == 0, service.output
    assert "facewire gRPC stopped" in service.output


def test_grpc_refuses_new_calls_while_draining(tmp_path: Path, face: Fixture) -> None:
    with ServiceProcess("grpc_service", service_env(tmp_path)) as service:
        target = service.address()
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = pb_grpc.FaceDetectionStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            release = threading.Event()

            def requests() -> Iterator[pb.DetectRequest]:
                yield pb.DetectRequest(image=face.data, frame_id="held")
                release.wait(30)  # keeps the call, and so the drain, open until we are done

            stream = stub.DetectStream(requests(), timeout=60)
            assert next(stream).frame_id == "held"  # live on the server
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            service.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "draining" in service.output, what="drain to begin")
            # Watchers (load balancers) hear about the drain at once.
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            with grpc.insecure_channel(target) as fresh, pytest.raises(grpc.RpcError) as caught:
                pb_grpc.FaceDetectionStub(fresh).Detect(
                    pb.DetectRequest(image=face.data), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert service.process.poll() is None  # still draining: the refusal was the drain's
            release.set()
            assert list(stream) == []
        assert service.process.wait(30) == 0


def test_serve_runs_both_and_stops_both(tmp_path: Path, face: Fixture) -> None:
    with ServiceProcess("facewire.serve", service_env(tmp_path)) as both:
        rest_url, grpc_target = both.both_addresses()
        rest = rest_url.removeprefix("http://")
        wait_for(lambda: rest_ready(rest_url), what="REST ready")
        with grpc.insecure_channel(grpc_target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = pb_grpc.FaceDetectionStub(channel)
            assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=30).boxes) == 1
        assert httpx.post(f"http://{rest}/v1/detect", content=face.data, timeout=30).is_success
        both.process.send_signal(signal.SIGINT)
        assert both.process.wait(30) == 0, both.output
    assert "facewire REST stopped" in both.output
    assert "facewire gRPC stopped" in both.output


def test_serve_stops_the_other_service_when_one_dies(tmp_path: Path) -> None:
    with ServiceProcess("facewire.serve", service_env(tmp_path)) as both:
        both.both_addresses()
        children = Path(f"/proc/{both.process.pid}/task/{both.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()]
        assert len(pids) == 2
        import os

        os.kill(pids[0], signal.SIGKILL)
        assert both.process.wait(30) != 0
    assert "exited with -9" in both.output


def test_serve_killed_outright_takes_its_services_with_it(tmp_path: Path) -> None:
    with ServiceProcess("facewire.serve", service_env(tmp_path)) as both:
        both.both_addresses()
        children = Path(f"/proc/{both.process.pid}/task/{both.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()]
        assert len(pids) == 2
        both.process.kill()  # SIGKILL: no chance to forward anything
        both.process.wait(30)

        def gone(pid: int) -> bool:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                return True
            return "State:\tZ" in status  # exited, waiting to be reaped by init

        wait_for(lambda: all(gone(pid) for pid in pids), timeout=30, what="the orphans to stop")


@pytest.mark.unit
def test_python_dash_m_entry_points_exist() -> None:
    for module in ("rest_service", "grpc_service", "facewire.serve", "grpc_service.healthcheck"):
        spec = subprocess.run(
            [sys.executable, "-c", f"import importlib.util as u; print(u.find_spec({module!r}))"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "None" not in spec.stdout


def test_rest_with_two_worker_processes(tmp_path: Path, face: Fixture) -> None:
    env = {**service_env(tmp_path), "FACEWIRE_WORKERS": "2"}
    with ServiceProcess("rest_service", env) as service:
        address = service.address()
        wait_for(lambda: rest_ready(f"http://{address}"), what="REST workers ready")
        with httpx.Client(base_url=f"http://{address}", timeout=30) as http:
            replies = [
                http.post("/v1/detect", params={"save": "true"}, content=face.data)
                for _ in range(4)
            ]
        assert all(len(r.json()["boxes"]) == 1 for r in replies)
        assert service.stop() == 0, service.output
    assert len(list(tmp_path.glob("*.jpg"))) == 4
