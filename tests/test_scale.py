"""make scale's short version: two replicas of each service behind a real nginx (Debian's
package, started with a generated config), driven by the facewire client; requests per
replica read from each replica's own /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.make import make_results


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick run of ``make scale``: no --out, so the default, relative
    ``scale-results/<time>`` (nginx once doubled a relative prefix); its results folder."""
    done, out = make_results("scale", "scale-results", tmp_path_factory.mktemp("scale"),
                             ["--quick"], timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def scale(scale_run: Path) -> dict[str, Any]:
    assert (scale_run / "scale.md").read_text().startswith("| how |")
    return json.loads((scale_run / "scale.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.timeout(330)
def test_the_default_relative_out_works(scale_run: Path) -> None:
    assert (scale_run / "scale.json").is_file()
    assert (scale_run / "work" / "nginx" / "nginx.conf").is_file()


def spread(scale: dict[str, Any], how: str, protocol: str) -> dict[str, Any]:
    return next(
        s for s in scale["spreads"] if s["how"].startswith(how) and s["protocol"] == protocol
    )


@pytest.mark.timeout(330)
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_per_request_balancing_spreads_one_connection_evenly(
    scale: dict[str, Any], protocol: str
) -> None:
    how = "nginx proxy_pass" if protocol == "rest" else "nginx grpc_pass"
    found = spread(scale, how, protocol)
    assert found["even"], found
    assert min(found["per_replica"]) > 0
    assert found["errors"] == 0


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_tcp_balancing_pins_a_connection_to_one_replica(
    scale: dict[str, Any], protocol: str
) -> None:
    found = spread(scale, "nginx stream", protocol)
    assert sorted(found["per_replica"])[0] == 0, found  # the trap, in numbers
    assert max(found["per_replica"]) > 0


def test_grpc_spreads_by_itself_with_round_robin_or_a_connection_age(
    scale: dict[str, Any],
) -> None:
    assert spread(scale, "client round_robin", "grpc")["even"]
    aged = spread(scale, "TCP, server connection age", "grpc")
    assert min(aged["per_replica"]) > 0, aged  # reconnected through the balancer


def test_the_proxy_cost_is_measured(scale: dict[str, Any]) -> None:
    costs = {c["protocol"]: c for c in scale["proxy_costs"]}
    assert set(costs) == {"rest", "grpc"}
    assert all(c["direct_p50_ms"] > 0 and c["proxied_p50_ms"] > 0 for c in costs.values())


def test_a_killed_replica_loses_no_answered_save(scale: dict[str, Any]) -> None:
    assert scale["audit_problems"] == []
    faults = {f["protocol"]: f for f in scale["faults"]}
    assert set(faults) == {"rest", "grpc", "grpc-stream"}
    # The survivors keep answering through nginx after the kill.
    assert all(f["answered"] > 0 for f in faults.values())
