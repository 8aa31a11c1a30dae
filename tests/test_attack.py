"""The attack suite's short version (``make attack ARGS="--quick --seconds 4"``): every
attack against both services over TLS while the well-behaved clients measure, judged by
the suite's own bounds (its verdict must be "every bound holds"), and what must hold
whatever the machine's speed: no traceback, no crash, a clean drain, every saved record
intact, the gRPC message budget's memory bound, and the deadlines and limits each attack
meets. Four seconds an attack gives each protocol about 135 samples a row, so the
latency bounds are on the p96 (the suite states the quantile it used)."""

from __future__ import annotations

import json

import pytest

from client.attack.attacks import ATTACKS
from client.attack.suite import table
from client.attack.versions import KNOWN_FIXES, outdated
from tests.make import make_results


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    # As a user runs it: make, ARGS, the default attack-results/<time>/.
    done, out = make_results("attack", "attack-results", tmp_path_factory.mktemp("attack"),
                             ["--quick", "--seconds", "4"])  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a bound did not hold
    assert (out / "attack.md").read_text().startswith("| attack |")
    return json.loads((out / "attack.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.timeout(660)
def test_every_attack_ran_against_both_services(report: dict) -> None:  # type: ignore[type-arg]
    ran = {(r["attack"], r["service"]) for r in report["rows"]}
    assert ran == {(a, s) for a in ATTACKS for s in ("rest", "grpc")}
    assert not [r for r in report["rows"] if r["outcome"].startswith("attack failed")]


def test_every_bound_holds(report: dict) -> None:  # type: ignore[type-arg]
    failing = [
        line
        for line in table(report).splitlines()
        if line.startswith("|")
        and not line.endswith(" holds |")
        and "verdict" not in line
        and "---" not in line
    ]
    assert report["ok"], "\n".join(failing) or table(report)


def test_no_attack_crashed_a_service_or_lost_a_record(report: dict) -> None:  # type: ignore[type-arg]
    assert all(r["alive"] for r in report["rows"])
    assert report["tracebacks"] == {"rest": 0, "grpc": 0}
    assert report["exit_codes"] == {"rest": 0, "grpc": 0}  # drained cleanly after it all
    assert report["audit_problems"] == []
    assert report["saved_rows"] > 0


def outcome(report: dict, attack: str, service: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in report["rows"] if (r["attack"], r["service"]) == (attack, service))


def test_the_deadlines_close_what_never_finishes(report: dict) -> None:  # type: ignore[type-arg]
    for service in ("rest", "grpc"):
        silent = outcome(report, "no-handshake", service)["outcome"]
        assert "100 silent connections; 100 closed by the server" in silent, silent
    trickled = outcome(report, "slowloris", "rest")["outcome"]
    assert "100 closed by the server" in trickled, trickled
    assert "408 Request Timeout" in outcome(report, "short-body", "rest")["outcome"]


def test_limits_hold_against_smuggling_and_too_many_streams(report: dict) -> None:  # type: ignore[type-arg]
    smuggle = outcome(report, "conflicting-lengths", "rest")["outcome"]
    assert "400 Bad Request" in smuggle
    assert "hidden request served: False" in smuggle
    streams = outcome(report, "too-many-streams", "grpc")["outcome"]
    assert streams.startswith("server allows 100; opened 200"), streams


def test_grpc_memory_under_max_size_uploads_stays_in_its_budget(report: dict) -> None:  # type: ignore[type-arg]
    uploads = outcome(report, "large-uploads", "grpc")
    assert uploads["memory_mib"] < 150, uploads
    assert "RESOURCE_EXHAUSTED" in uploads["outcome"], uploads


@pytest.mark.unit
def test_the_protocol_libraries_include_the_known_fixes() -> None:
    assert outdated() == []
    assert {"grpcio", "h11"} <= set(KNOWN_FIXES)
