"""h2load beside the Python generator: it drives REST and unary gRPC for real, and its
"successes" are checked against the services' own counters, since a refused gRPC call
is an HTTP 200 to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.bench import FACE
from client.bench.h2load import H2loadGenerator, grpc_body
from client.bench.load import WindowSpec
from client.processes import free_port
from client.readiness import ready
from client.transports import make_transport
from facewire.v1 import face_detection_pb2 as pb
from tests.servers import ROOT, ServiceProcess, wait_for

pytestmark = pytest.mark.timeout(300)


def bench(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "client.bench", "--start-services", "--generator", "h2load",
            "--protocols", "rest,grpc", "--concurrency", "1", "--window", "0.5",
            "--max-windows", "2", "--stable-windows", "2", "--warmup", "0.3", "--frames", "3",
            "--rest-url", f"http://127.0.0.1:{free_port()}",
            "--grpc-target", f"127.0.0.1:{free_port()}",
            "--out", str(tmp_path), *extra]  # fmt: skip
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_make_bench_with_h2load_measures_rest_and_grpc_echo_and_haar(tmp_path: Path) -> None:
    done = bench(tmp_path, "--models", "echo,haar")
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "results.json").read_text())
    measured = {(p["model"], p["protocol"]): p for p in run["points"]}
    assert set(measured) == {
        (m, f"{p} (h2load)") for m in ("echo", "haar") for p in ("rest", "grpc")
    }
    for point in measured.values():
        assert point["generator"] == "h2load"
        assert point["completed"] > 0
        assert point["error_count"] == 0
        assert point["latency_ms"]["p50"] > 0
    assert "- **Load generator:** h2load (nghttp2)." in (tmp_path / "report.md").read_text()


def test_a_refused_grpc_call_that_h2load_counts_as_a_success_fails_the_run(tmp_path: Path) -> None:
    """Every frame is over the upload limit (but under the read limit, 4× that, so the
    services read and refuse it): REST answers 413, and gRPC an HTTP 200 whose
    grpc-status is RESOURCE_EXHAUSTED, which h2load counts as a success."""
    done = bench(tmp_path, "--models", "echo", env={"FACEWIRE_MAX_UPLOAD_BYTES": "20000"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "h2load's requests failed" in done.stdout + done.stderr
    run = json.loads((tmp_path / "results.json").read_text())
    errors = {p["protocol"]: p["errors"] for p in run["points"]}
    assert set(errors["grpc (h2load)"]) == {"service: payload_too_large"}
    assert set(errors["rest (h2load)"]) == {"service: payload_too_large"}
    assert all(p["completed"] == 0 for p in run["points"])


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    metrics = free_port()
    env = {"FACEWIRE_REST_PORT": "0", "FACEWIRE_GRPC_PORT": "0",
           "FACEWIRE_GRPC_METRICS_PORT": str(metrics),
           "FACEWIRE_STORAGE_DIR": str(tmp_path)}  # fmt: skip
    with ServiceProcess("facewire.serve", env) as process:
        url, target = process.both_addresses()
        wait_for(lambda: ready(url, target), what="the services")
        yield url, target, f"http://127.0.0.1:{metrics}/metrics"


def test_h2load_sees_http_200_where_the_service_refused(services: tuple[str, str, str]) -> None:
    url, target, grpc_metrics = services
    generator = H2loadGenerator([FACE.read_bytes()], url, target, f"{url}/metrics", grpc_metrics)
    try:
        refused = generator.run(WindowSpec("grpc", "nope", concurrency=1, rate=None, requests=20))
        assert generator.last_statuses == {"200": 20}  # h2load: twenty successes
        assert refused.completed == 0
        assert refused.errors == {"service: invalid_input": 20}
        fine = generator.run(WindowSpec("grpc", "echo", concurrency=2, rate=None, requests=40))
        assert (fine.completed, dict(fine.errors)) == (40, {})
    finally:
        generator.close()


@pytest.mark.unit
def test_the_grpc_body_is_what_a_grpc_client_sends() -> None:
    body = grpc_body(b"image", "echo")
    assert body[0] == 0  # not compressed
    length = int.from_bytes(body[1:5], "big")
    message = pb.DetectRequest.FromString(body[5:])
    assert length == len(body) - 5
    assert (message.image, message.model) == (b"image", "echo")


def test_a_new_connection_per_request(rest_url: str, grpc_target: str) -> None:
    kept = make_transport("rest", rest_url, grpc_target)
    fresh = make_transport("rest", rest_url, grpc_target, new_connection=True)
    image = FACE.read_bytes()
    try:
        kept.detect(image, model="echo", save=False, frame_id="")
        first = kept._connection  # type: ignore[attr-defined]
        kept.detect(image, model="echo", save=False, frame_id="")
        assert kept._connection is first is not None  # type: ignore[attr-defined]
        for _ in range(2):
            fresh.detect(image, model="echo", save=False, frame_id="")
            assert fresh._connection is None  # type: ignore[attr-defined]
    finally:
        kept.close()
        fresh.close()
    unary = make_transport("grpc", rest_url, grpc_target, new_connection=True)
    try:
        channels = []  # held, so that no two can share an id()
        for _ in range(3):
            unary.detect(image, model="echo", save=False, frame_id="")
            channels.append(unary._channel)  # type: ignore[attr-defined]
        assert len({id(channel) for channel in channels}) == 3
    finally:
        unary.close()
    with pytest.raises(ValueError, match="one long-lived stream"):
        make_transport("grpc-stream", rest_url, grpc_target, new_connection=True)
