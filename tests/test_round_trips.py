"""The round-trip tools, briefly, through a real wirefilter link: the sweep (every
series at each round trip, its report rebuilt from its JSON) and the gRPC windows
table. Judged in the link's own measured round trips, never a wall-clock bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client.bench import sweep, windows
from tests.servers import ROOT

pytestmark = pytest.mark.timeout(400)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=360)  # fmt: skip


def test_the_sweep_measures_every_series_at_each_round_trip(tmp_path: Path) -> None:
    done = run("client.bench", "--sweep-rtt", "0,30", "--sweep-loss", "0", "--models", "echo",
               "--concurrency", "1", "--window", "0.6", "--stable-windows", "1",
               "--max-windows", "1", "--warmup", "0.3", "--frames", "4",
               "--link-engine", "wirefilter", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / sweep.RESULTS_JSON).read_text())
    assert result["engine"] == "wirefilter"
    assert [link["check"]["agrees"] for link in result["links"]] == [True, True]
    rows: dict[tuple[str, float], dict[str, Any]] = {
        (r["series"], r["rtt_ms"]): r for r in result["points"]
    }
    assert {series for series, _ in rows} == {name for name, _, _ in sweep.SERIES}
    rtt = result["links"][1]["check"]["round_trip"]["measured_ms"]
    for name, _, _ in sweep.SERIES:
        far = rows[(name, 30.0)]
        assert far["error_count"] == 0, name
        assert far["latency_ms"]["p50"] >= rtt, name  # no request beats the round trip
    fresh, kept = rows[("rest new connection", 30.0)], rows[("rest", 30.0)]
    assert fresh["latency_ms"]["p50"] - kept["latency_ms"]["p50"] >= rtt  # TCP's handshake
    assert (tmp_path / sweep.PLOT).stat().st_size > 0
    assert (tmp_path / sweep.REPORT_MD).read_text() == sweep.report(result)
    assert "round trips per request" in sweep.report(result)


def test_a_64_kib_window_costs_grpc_a_round_trip_that_grpcs_own_does_not(tmp_path: Path) -> None:
    """The 1280×720 fixture (106 KB) over a 64 KiB stream window waits a round trip for
    the window to open; grpc's own flow control (4 MiB) and the service's default
    do not."""
    done = run("client.bench.windows", "--rtt-ms", "0,40", "--calls", "5", "--windows",
               f"{64 << 10},0", "--link-engine", "wirefilter", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / windows.RESULTS_JSON).read_text())
    rtt = result["link_checks"]["40.0"]["round_trip"]["measured_ms"]

    def p50(window: int, protocol: str) -> float:
        (cell,) = [c for c in result["cells"] if c["window_bytes"] == window and c["rtt_ms"] == 40
                   and c["frame"] == "1280x720 fixture" and c["protocol"] == protocol]  # fmt: skip
        return float(cell["p50_ms"])

    for protocol in ("grpc", "grpc-stream"):
        assert p50(64 << 10, protocol) - p50(0, protocol) >= 0.5 * rtt, protocol
    assert (tmp_path / windows.REPORT_MD).read_text() == windows.report(result)
