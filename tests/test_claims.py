"""make claims, briefly: every experiment runs against real services (loopback, TLS, a
veth pair, a rate-limited link and a delayed one, in clear and with TLS, made by
wirefilter where the kernel has no netem), every claim gets a verdict, and the numbers
that do not depend on the machine's speed are what the protocols make them, counted in
the link's own measured round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.bench.claims import CLAIMS
from tests.make import make_results
from tests.servers import ROOT

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    # As a user runs it: make, ARGS, the default claims-results/<time>/.
    done, out = make_results("claims", "claims-results", tmp_path_factory.mktemp("claims"),
                             ["--quick"], timeout=540)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads((out / "claims.json").read_text())


def test_every_claim_gets_a_verdict_with_its_reasons(claims: tuple[Path, dict]) -> None:
    out, document = claims
    verdicts = document["verdicts"]
    assert set(verdicts) == {claim.key for claim in CLAIMS}
    statuses = {"holds", "does not hold", "holds only when", "not measured"}
    for verdict in verdicts.values():
        assert verdict["status"] in statuses
        assert verdict["reasons"]
    report = (out / "claims.md").read_text()
    assert report.startswith("# The claims, tested")
    (delay,) = [line for line in report.splitlines() if line.startswith("- **Delay and loss:**")]
    assert "made by" in delay
    assert "not measured" not in report.split("## ")[0]  # every place was set up
    assert "no netem" not in report
    for claim in CLAIMS:
        assert f"“{claim.quote}”" in report
    assert (out / "sizes.png").stat().st_size > 0
    # Rebuilt from its JSON, the report is the same.
    (out / "claims.md").unlink()
    argv = [sys.executable, "-m", "client.bench.claims", "report", str(out)]
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert (out / "claims.md").read_text() == report


def test_what_the_protocols_themselves_decide(claims: tuple[Path, dict]) -> None:
    results = claims[1]["results"]
    forms = results["payload_forms"]["forms"]
    assert forms["errors"] == {}
    raw = forms["rest"]["sent_bytes"]
    assert forms["rest-v2-json"]["sent_bytes"] > 1.3 * raw  # base64: four bytes per three
    assert abs(forms["grpc"]["sent_bytes"] - raw) < 64  # protobuf: the image and a few tags
    wire = results["header_bytes"]
    overhead = {p: w["wire_bytes_up"] - w["payload_bytes_up"] for p, w in wire.items()}
    assert overhead["grpc"] < overhead["rest"]  # HPACK against HTTP/1.1's text headers
    tls = results["connections"]
    for protocol in ("rest", "grpc"):
        cost = tls[f"loopback TLS {protocol}"]["new connection"]["minus_baseline_ms"][0]
        assert cost > 0  # a TLS handshake per request is never free
    codec = results["codec_costs"]
    assert codec["faces"] >= 1  # the answers carry boxes, as they would
    assert set(codec["forms"]) == {"rest", "rest-v2", "rest-v2-json", "grpc", "grpc-v2"}
    assert set(codec["forms"]["rest"]) == {"server encode", "client decode", "total"}
    for form in ("rest-v2", "rest-v2-json", "grpc", "grpc-v2"):
        assert len(codec["forms"][form]) == 5  # every step has a codec, and the total
    limited = results["rest_against_grpc"]["rate-limited link"]
    assert "Mbit/s" in limited
    assert "4 ms RTT" in limited  # fios, its round trip included: no netem needed


def test_across_the_round_trip(claims: tuple[Path, dict]) -> None:
    """The delayed experiments, in units of the link's own measured round trip: a new
    connection costs at least TCP's handshake, a new TLS connection at least half a round
    trip more (TLS 1.3's handshake is one; gRPC's wait for the server's HTTP/2 SETTINGS,
    a round trip in clear, overlaps it);
    every request takes at least one round trip; loss and idle cameras were measured."""
    results = claims[1]["results"]
    checks = results["link_checks"]
    assert checks["delayed"]["agrees"]
    rtt = checks["delayed"]["round_trip"]["measured_ms"]
    tls = results["connections"]
    for protocol in ("rest", "grpc"):
        clear, secure = tls[f"delayed {protocol}"], tls[f"delayed TLS {protocol}"]
        assert clear["kept alive"]["p50_ms"] >= rtt
        assert clear["round_trips"][0] >= 0.9  # TCP's handshake
        assert secure["round_trips"][0] >= clear["round_trips"][0] + 0.5  # and TLS's
    idle = results["slow_start"]
    assert idle["tcp_slow_start_after_idle"] in {"0", "1"}
    for key in ("rest 30 fps", "rest 1 fps", "grpc 30 fps", "grpc 1 fps"):
        assert idle[key]["round_trips"] >= 0.9
    lossy = results["loss"]
    assert set(lossy) >= {"1 % rest, 8 connections", "3 % grpc, 1 shared channel"}
    for key, row in lossy.items():
        if isinstance(row, dict):
            assert row["requests"] > 0, key
            assert row["p99_ms"] >= row["p50_ms"] >= rtt, key


def test_the_factorial_separates_the_factors(claims: tuple[Path, dict]) -> None:
    """Every cell of HTTP version × encoding × mode, and grpcio, answered on loopback and
    across the round trip; what the encodings put on the wire does not depend on the HTTP
    version; HPACK is measured with the version the only difference; and the streaming
    verdict follows from REST's WebSocket having run."""
    out, document = claims
    results = document["results"]
    design = results["factorial_design"]
    names = {cell["cell"] for cell in design["cells"]}
    assert len(names) == 9
    rtt = results["link_checks"]["delayed"]["round_trip"]["measured_ms"]
    for place in ("loopback", "delayed"):
        one, eight = design[place]["concurrency 1"], design[place]["concurrency 8"]
        assert one["errors"] == {}, place
        assert eight["errors"] == {}, place
        assert set(one["cells"]) == set(eight["cells"]) == names
        cells = one["cells"]
        for encoding in ("raw", "protobuf", "JSON+base64"):  # bytes: the version's no part
            h1, h2 = cells[f"REST HTTP/1.1 {encoding}"], cells[f"REST HTTP/2 {encoding}"]
            assert h1["sent_bytes"] == h2["sent_bytes"]
            assert h1["received_bytes"] == h2["received_bytes"]
        raw = cells["REST HTTP/1.1 raw"]["sent_bytes"]
        assert cells["REST HTTP/1.1 JSON+base64"]["sent_bytes"] > 1.3 * raw  # base64
        assert cells["REST HTTP/2 protobuf"]["sent_bytes"] == cells["grpcio unary"]["sent_bytes"]
        assert set(one["effects_ms"]) >= {
            "HTTP/2 − HTTP/1.1 (mean over encodings)",
            "interaction: version × protobuf",
            "implementation: grpcio − REST HTTP/2 protobuf",
        }
        for low_mid_high in one["effects_ms"].values():
            assert low_mid_high[1] <= low_mid_high[0] <= low_mid_high[2]
        if place == "delayed":
            assert all(c["p50_ms"] >= rtt for c in cells.values())  # a round trip each
    wire = results["header_bytes"]
    beyond = {p: w["wire_bytes_up"] - w["payload_bytes_up"] for p, w in wire.items()}
    assert beyond["REST on Granian, HTTP/2"] < beyond["REST on Granian, HTTP/1.1"]  # HPACK
    verdicts = document["verdicts"]
    assert verdicts["streaming"]["status"] == "does not hold"  # REST streamed
    assert "HPACK's own share" in " ".join(verdicts["headers"]["reasons"])
    report = (out / "claims.md").read_text()
    assert "### The factorial: HTTP version × encoding × mode" in report
    assert (out / "factorial.png").stat().st_size > 0
