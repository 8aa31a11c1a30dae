"""The benchmark end to end, against real services on ephemeral ports."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from client.bench.load import WindowSpec
from client.bench.measure import Latency
from client.bench.runner import LoadPool
from client.processes import free_port
from client.sources import SampleSource
from facewire.settings import Settings
from tests.make import make_results
from tests.servers import ROOT, ServiceProcess, rest_server

QUICK = ("--window", "0.4", "--max-windows", "3", "--warmup", "0.2", "--frames", "4")


def bench(out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.bench", *QUICK, "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_png(path: Path) -> None:
    image = cv2.imread(str(path))
    assert image is not None, path
    assert image.shape[0] > 200
    assert image.shape[1] > 300
    assert image.std() > 5, f"{path.name} is blank"


def test_short_closed_loop_run_produces_every_output(
    rest_url: str, grpc_target: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = bench(out, "--rest-url", rest_url, "--grpc-target", grpc_target,
                 "--protocols", "rest,grpc,grpc-stream", "--models", "haar,echo",
                 "--concurrency", "1,2", "--inprocess")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((out / "results.json").read_text())
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(run["points"]) == len(rows) == 2 * 2 * 3  # models × levels × protocols
    for point, row in zip(run["points"], rows, strict=True):  # the CSV agrees with the JSON
        assert row["protocol"] == point["protocol"]
        assert row["model"] == point["model"]
        assert float(row["throughput"]) == pytest.approx(point["throughput"])
        assert float(row["p50_ms"]) == pytest.approx(point["latency_ms"]["p50"])
        assert int(row["errors"]) == point["error_count"] == 0
        assert point["completed"] > 0
        assert point["bytes_sent"] > 1000  # the frames travelled
    haar = [p for p in run["points"] if p["model"] == "haar"]
    echo = [p for p in run["points"] if p["model"] == "echo"]
    assert all(p["server_ms"]["detect"] > 0 for p in haar)
    assert all(p["server_ms"]["total"] == 0 for p in echo)  # echo does no image work
    assert set(run["floor"]) == {"haar"}  # echo does no pipeline work: no floor
    assert run["floor"]["haar"]["single_thread_p50_ms"] > 0
    assert all(p["efficiency"] > 0 for p in haar)
    assert run["machine"]["cores"] >= 1
    assert run["machine"]["packages"]["grpcio"]
    for kind in ("cdf", "sweep", "breakdown"):
        for model in ("haar", "echo"):
            assert_png(out / f"{kind}_{model}.png")
    report = (out / "report.md").read_text()
    assert "## Conclusion" in report
    assert "![breakdown_haar](breakdown_haar.png)" in report
    assert "median end-to-end latency" in report

    # `report DIR` rebuilds everything from the JSON alone.
    csv_before = (out / "results.csv").read_text()
    for name in ("results.csv", "report.md", "cdf_haar.png"):
        (out / name).unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "client.bench", "report", str(out)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out / "results.csv").read_text() == csv_before
    assert (out / "report.md").read_text() == report
    assert_png(out / "cdf_haar.png")


def test_open_inference_protocol_runs_beside_facewires_own(
    rest_url: str, grpc_target: str, tmp_path: Path
) -> None:
    out = tmp_path / "v2"
    done = bench(out, "--rest-url", rest_url, "--grpc-target", grpc_target,
                 "--protocols", "rest,rest-v2,grpc,grpc-v2", "--models", "haar",
                 "--concurrency", "1")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((out / "results.json").read_text())
    points = {p["protocol"]: p for p in run["points"]}
    assert set(points) == {"rest", "rest-v2", "grpc", "grpc-v2"}
    for name, point in points.items():
        assert point["error_count"] == 0, name
        assert point["completed"] > 0, name
        assert point["server_ms"]["detect"] > 0, name  # TIMINGS_MS made it back
        assert point["bytes_sent"] > 1000, name
    # The same image, a little more framing on v2 (the JSON header or the tensor fields).
    assert points["rest-v2"]["bytes_sent"] > points["rest"]["bytes_sent"]
    assert points["grpc-v2"]["bytes_sent"] > points["grpc"]["bytes_sent"]


def test_short_open_loop_run(rest_url: str, grpc_target: str, tmp_path: Path) -> None:
    out = tmp_path / "open"
    done = bench(out, "--rest-url", rest_url, "--grpc-target", grpc_target,
                 "--protocols", "rest,grpc", "--models", "echo", "--rate", "20,40",
                 "--arrivals", "poisson", "--resolution", "320x180",
                 "--jpeg-quality", "50")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((out / "results.json").read_text())
    assert run["config"]["mode"] == "open"
    assert run["frames"]["width"] == 320
    assert {p["level"] for p in run["points"]} == {20.0, 40.0}
    for point in run["points"]:
        assert point["completed"] > 0
        assert point["service_ms"]["p50"] <= point["latency_ms"]["p50"] + 1e-9
        assert point["dropped"] == 0


def test_open_loop_over_capacity_reports_what_was_achieved(
    rest_url: str, grpc_target: str, tmp_path: Path
) -> None:
    """Offered 300/s of haar to a server that manages well under that, with 4 slots:
    the report must show the achieved rate and the drops, never the offered rate."""
    out = tmp_path / "over"
    done = bench(out, "--rest-url", rest_url, "--grpc-target", grpc_target,
                 "--protocols", "grpc", "--models", "haar", "--rate", "300",
                 "--max-inflight", "4", "--window", "1", "--max-windows", "3")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (point,) = json.loads((out / "results.json").read_text())["points"]
    assert point["dropped"] > 0
    assert point["throughput"] < 200
    assert "dropped at the in-flight cap" in (out / "report.md").read_text()


def test_windows_by_request_count(rest_url: str, grpc_target: str, tmp_path: Path) -> None:
    out = tmp_path / "count"
    done = bench(out, "--rest-url", rest_url, "--grpc-target", grpc_target,
                 "--protocols", "rest,grpc", "--models", "echo", "--concurrency", "2",
                 "--window-requests", "25")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((out / "results.json").read_text())
    for point in run["points"]:
        assert point["completed"] == 25 * min(point["windows"], 3)  # the counted windows


#: Issue 25's check: REST over HTTP/2 (a second REST service, on Granian, started beside
#: the default one), protobuf over REST and the WebSocket stream, beside REST and gRPC.
EVERY_REST_PATH = ("rest", "grpc", "rest-h2", "rest-protobuf", "rest-ws")


def test_start_services_uses_the_addresses_given(tmp_path: Path) -> None:
    rest_port, grpc_port = free_port(), free_port()
    out = tmp_path / "started"
    env_storage = {"FACEWIRE_STORAGE_DIR": str(tmp_path / "storage")}
    done = subprocess.run(
        [sys.executable, "-m", "client.bench", *QUICK, "--out", str(out), "--start-services",
         "--rest-url", f"http://127.0.0.1:{rest_port}", "--grpc-target",
         f"127.0.0.1:{grpc_port}", "--models", "haar", "--concurrency", "1",
         "--protocols", ",".join(EVERY_REST_PATH)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, **env_storage},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Every protocol answered the first frame with the same boxes, before the timing.
    agreed = re.search(r"agreement: (.*) gave the same (\d+) box", done.stdout)
    assert agreed is not None, done.stdout
    assert agreed.group(1) == ", ".join(EVERY_REST_PATH)
    assert int(agreed.group(2)) > 0  # the sample's first frame has faces
    points = json.loads((out / "results.json").read_text())["points"]
    assert {p["protocol"] for p in points} == set(EVERY_REST_PATH)
    assert all(p["completed"] > 0 and p["error_count"] == 0 for p in points)


def test_dead_port_finishes_with_clear_error_counts(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "dead"
    done = bench(out, "--rest-url", f"http://127.0.0.1:{port}",
                 "--grpc-target", f"127.0.0.1:{port}", "--models", "echo",
                 "--concurrency", "1", "--max-windows", "3")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((out / "results.json").read_text())
    for point in run["points"]:
        assert point["completed"] == 0
        assert point["error_count"] > 0
        assert set(point["errors"]) == {"unreachable"}
        assert point["latency_ms"] is None
    assert "Errors:" in (out / "report.md").read_text()


def test_a_service_that_rejects_everything(tmp_path: Path) -> None:
    settings = Settings(storage_dir=tmp_path / "s", max_upload_bytes=1000, threads=1)
    out = tmp_path / "rejected"
    with rest_server(settings) as url:
        done = bench(out, "--rest-url", url, "--protocols", "rest", "--models", "haar",
                     "--concurrency", "1")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (point,) = json.loads((out / "results.json").read_text())["points"]
    assert point["completed"] == 0
    assert point["errors"]["rejected"] > 0
    assert "rejected" in (out / "results.csv").read_text()


def test_a_stalled_server_shows_in_p99_under_open_loop_load(tmp_path: Path) -> None:
    env = {"FACEWIRE_GRPC_PORT": "0", "FACEWIRE_STORAGE_DIR": str(tmp_path)}
    frames = [cv2.imencode(".jpg", SampleSource(320, 180).frame(n))[1].tobytes() for n in range(3)]
    with ServiceProcess("grpc_service", env) as service:
        target = service.address()
        pool = LoadPool(1, frames, "http://127.0.0.1:1", target)
        try:
            spec = WindowSpec("grpc", "echo", None, rate=40.0, duration_s=0.5)
            pool.run(spec)  # warm: the connection is up before the measured window
            results = []
            measured = WindowSpec("grpc", "echo", None, rate=40.0, duration_s=3.0)
            window = threading.Thread(target=lambda: results.append(pool.run(measured)))
            window.start()
            time.sleep(1.0)  # fault injection: the stall lands mid-window
            os.kill(service.process.pid, signal.SIGSTOP)
            time.sleep(0.6)
            os.kill(service.process.pid, signal.SIGCONT)
            window.join(60)
        finally:
            pool.close()
    (result,) = results
    latency = Latency.of(result.latency)
    assert latency is not None
    assert result.completed + sum(result.errors.values()) + result.dropped == 120
    assert latency.p99 > 300  # the 600 ms stall is in the tail, not hidden
    assert latency.p50 * 3 < latency.p99  # and most requests never saw it


def test_make_perf_quick_measures_every_target(tmp_path: Path) -> None:
    """`make perf ARGS=--quick`, as CI runs it, into its default perf-results/<time>/:
    every target gets a value (the values themselves mean little at this size, and no
    test ever judges a speed)."""
    done, tmp_path = make_results("perf", "perf-results", tmp_path, ["--quick"], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "perf.json").read_text())
    measured = {(row["target"], row["protocol"]) for row in report["targets"]}
    expected = {
        *(("P1", p) for p in ("rest", "grpc", "grpc-stream")),
        *(("P2", p) for p in ("rest", "grpc", "grpc-stream")),
        *(("P3", p) for p in ("rest", "grpc", "grpc-stream")),
        *(("P4", p) for p in ("rest", "grpc")),
        *(("P4 CPU", p) for p in ("rest", "grpc")),
        ("P4 budget", "grpc"),
        ("P5", "all"),
        ("P6", "window fps"),
        ("P6", "rest overlay updates/s"),
        ("P6", "grpc overlay updates/s"),
        ("P7", "rest"),
        ("P7", "grpc"),
    }
    assert measured == expected
    assert all(row["value"] > 0 for row in report["targets"])
    assert report["errors"] == {}
    assert report["served"]["rest"] >= 300  # P7's reading came after the asked-for requests
    # The opt-in decodes, against the specified pipeline: timed, and compared on every
    # fixture and a few sample frames (2 fixtures + 3 frames in the quick plan).
    assert set(report["measured"]["decode time ÷ colour's"]) == {"gray", "reduced"}
    for mode in ("gray", "reduced"):
        agreement = report["notes"][f"{mode} decode against colour"]
        assert agreement["frames"] == 5
        assert agreement["identical"] <= agreement["close"] <= agreement["frames"]
    assert report["unmet_conditions"] == {}
    assert "| P1 | rest |" in (tmp_path / "perf.md").read_text()
    assert report["measured"]["P4 inline"].keys() == {"rest", "grpc"}  # beside P4
