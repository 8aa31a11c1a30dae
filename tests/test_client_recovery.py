"""Both services restart while the GUI's engine or the benchmark is running: each
notices, keeps going, and is answered again by the new processes without any help."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from client.engine import Engine
from client.processes import free_port
from client.sources import SampleSource
from client.transports import make_transport
from tests.servers import ROOT, ServiceProcess, wait_for


def serve_env(tmp_path: Path, rest_port: int, grpc_port: int) -> dict[str, str]:
    return {
        "FACEWIRE_REST_PORT": str(rest_port),
        "FACEWIRE_GRPC_PORT": str(grpc_port),
        "FACEWIRE_STORAGE_DIR": str(tmp_path / "storage"),
        "FACEWIRE_THREADS": "1",
        "FACEWIRE_LOG_LEVEL": "debug",  # a line per request: how the test sees traffic
    }


def test_the_gui_engine_recovers_when_both_services_restart(tmp_path: Path) -> None:
    rest_port, grpc_port = free_port(), free_port()
    url, target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    env = serve_env(tmp_path, rest_port, grpc_port)
    engine = Engine(SampleSource(), lambda p: make_transport(p, url, target), mode="both")
    rest, grpc_ = engine.workers["rest"], engine.workers["grpc"]
    engine.start()
    try:
        with ServiceProcess("facewire.serve", env) as first:
            first.both_addresses()
            wait_for(lambda: rest.stats.snapshot().count >= 3, what="REST answering")
            wait_for(lambda: grpc_.stats.snapshot().count >= 3, what="gRPC answering")
            assert first.stop() == 0
        for worker in (rest, grpc_):
            wait_for(lambda w=worker: w.stats.snapshot().state == "unreachable",
                     what=f"{worker.protocol} noticing the outage")  # fmt: skip
        before = {w.protocol: w.stats.snapshot().count for w in (rest, grpc_)}
        with ServiceProcess("facewire.serve", env) as second:
            second.both_addresses()
            for worker in (rest, grpc_):
                wait_for(lambda w=worker: w.stats.snapshot().count >= before[w.protocol] + 3,
                         what=f"{worker.protocol} answered again")  # fmt: skip
                assert worker.stats.snapshot().state == "connected"
            engine.set_mode("stream")  # a stream opened after the restart works too
            stream = engine.workers["grpc-stream"]
            wait_for(lambda: stream.stats.snapshot().count >= 3, what="the stream answering")
            assert second.stop() == 0
    finally:
        engine.stop()


def stop_if_running(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_the_benchmark_rides_out_a_restart_and_counts_the_outage(tmp_path: Path) -> None:
    rest_port, grpc_port = free_port(), free_port()
    env = serve_env(tmp_path, rest_port, grpc_port)
    out = tmp_path / "bench"
    with ExitStack() as cleanup:
        first = cleanup.enter_context(ServiceProcess("facewire.serve", env))
        first.both_addresses()
        bench = subprocess.Popen(
            [sys.executable, "-m", "client.bench", "--out", str(out),
             "--rest-url", f"http://127.0.0.1:{rest_port}",
             "--grpc-target", f"127.0.0.1:{grpc_port}",
             "--protocols", "grpc,rest", "--models", "haar", "--concurrency", "1",
             "--window", "0.5", "--stable-windows", "14", "--max-windows", "14",
             "--warmup", "0.2", "--frames", "4"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        cleanup.callback(stop_if_running, bench)  # whatever fails, nothing is left running
        # Restart the services once the run has had a few gRPC answers.
        wait_for(lambda: first.output.count("grpc frame_id") >= 5, 60, "gRPC answers")
        assert first.stop() == 0
        second = cleanup.enter_context(ServiceProcess("facewire.serve", env))
        second.both_addresses()
        second.wait_for_output(r"grpc frame_id", timeout=60)  # the benchmark is back
        output, _ = bench.communicate(timeout=180)
        assert second.stop() == 0
    assert bench.returncode == 0, output
    points = json.loads((out / "results.json").read_text())["points"]
    assert {p["protocol"] for p in points} == {"grpc", "rest"}
    assert all(p["completed"] > 0 for p in points)
    # The outage is in the report as errors, not hidden and not a crash.
    assert sum(p["errors"].get("unreachable", 0) for p in points) > 0
