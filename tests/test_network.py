"""Network profiles for real: a namespace, a link (veth + tc, or wirefilter between two
TAP devices), the link checked against its profile, the exact commands, benchmarks
across it, and clean-up however a run ends. Timing is judged against the link's own
measured round trip, never against a wall-clock bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client.network import limits, linkcheck, wirefilter
from client.network.namespace import ServiceNetwork, netem_available, remove_stale
from client.network.profiles import PROFILES, Profile, ProfileError, resolve, tc_commands
from tests.make import make_results
from tests.servers import ROOT, wait_for

pytestmark = pytest.mark.timeout(300)


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def emulators() -> list[str]:
    """Command lines of every wirefilter link's programs still running."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if line.startswith(("dpipe", "wirefilter", "vde_plug")) and (
                wirefilter.SOCKET_PREFIX in line or "tap://fw" in line
            ):
                found.append(line)
    return found


def our_namespaces() -> set[str]:
    return {line.split()[0] for line in namespaces().splitlines() if line.startswith("fw")}


def nothing_left(pid: int) -> bool:
    """No namespace, device or emulator process of the run ``pid`` remains."""
    tag = str(pid)
    return (
        f"fw{tag}" not in namespaces()
        and all(f"{prefix}{tag}" not in links() for prefix in ("fwh", "fwt"))
        and not any(f"{wirefilter.SOCKET_PREFIX}{tag}" in e or f"fwt{tag}" in e
                    for e in emulators())
    )  # fmt: skip


def commands(profile_name: str, device: str, direction: str) -> list[str]:
    return [" ".join(c) for c in tc_commands(PROFILES[profile_name], device, direction)]


@pytest.mark.unit
def test_each_profile_runs_exactly_these_tc_commands() -> None:
    assert commands("cable", "fwh1", "up") == [
        "tc qdisc add dev fwh1 root handle 1: netem delay 14ms",
        "tc qdisc add dev fwh1 parent 1:1 handle 10: tbf rate 1mbit burst 4500 latency 400ms",
    ]
    assert commands("cable", "fwn1", "down")[1] == (
        "tc qdisc add dev fwn1 parent 1:1 handle 10: tbf rate 5mbit burst 4500 latency 400ms"
    )
    # Loss whole on each side (each packet crosses one side once), half the RTT each.
    assert commands("wifi", "d", "up")[0] == (
        "tc qdisc add dev d root handle 1: netem delay 20ms loss 0.2%"
    )
    # Rate only: no netem at all; a bucket of rate ÷ HZ.
    assert commands("lan", "d", "down") == [
        "tc qdisc add dev d root handle 10: tbf rate 1000mbit burst 500000 latency 400ms"
    ]
    assert commands("loopback", "d", "up") == []
    jitter = Profile("j", 10, 10, rtt_ms=40, jitter_ms=10)
    assert tc_commands(jitter, "d", "up")[0][-3:] == ["delay", "20ms", "5ms"]
    # Another engine delays and drops: tbf alone, at the root.
    assert [" ".join(c) for c in tc_commands(PROFILES["cable"], "t", "up", with_netem=False)] == [
        "tc qdisc add dev t root handle 10: tbf rate 1mbit burst 4500 latency 400ms"
    ]


@pytest.mark.unit
def test_wirefilter_gets_half_the_round_trip_each_way_and_the_loss_whole() -> None:
    sock = Path("/tmp/s")
    assert wirefilter.arguments(PROFILES["wifi"], sock) == [
        "wirefilter", "-d", "20", "-l", "0.2", "-M", "/tmp/s"]  # fmt: skip
    jittery = Profile("j", None, None, rtt_ms=25, jitter_ms=5, loss_pct=1)
    assert wirefilter.values(jittery) == {"delay": "12.5+2.5U", "loss": "1"}


@pytest.mark.unit
def test_profiles_resolve_with_custom_values_and_say_where_they_come_from() -> None:
    assert resolve(None) == PROFILES["loopback"]
    assert not resolve(None).shaped
    custom = resolve(None, down_mbit=20, up_mbit=8)
    assert custom.describe() == "custom: 20 Mbit/s down / 8 Mbit/s up (custom)"
    tuned = resolve("dsl", rtt_ms=80, jitter_ms=4)
    assert (tuned.down_mbit, tuned.up_mbit, tuned.rtt_ms, tuned.jitter_ms) == (1.5, 0.384, 80, 4)
    assert "WebPageTest" in tuned.source
    rate_only = resolve("cable", rate_only=True)
    assert not rate_only.impaired
    assert (rate_only.down_mbit, rate_only.up_mbit) == (5, 1)
    with pytest.raises(ProfileError, match="unknown network profile"):
        resolve("moon")
    with pytest.raises(ProfileError, match="above 0"):
        resolve(None, up_mbit=0)
    with pytest.raises(ProfileError, match="below 100"):
        resolve(None, loss_pct=100)
    for profile in PROFILES.values():
        assert profile.source  # every named profile says where its numbers come from


@pytest.mark.unit
def test_a_link_check_decides_from_its_own_numbers() -> None:
    trip = linkcheck.RoundTrip(50, 0, 0.2, [50.1, 50.3, 50.2])
    assert trip.agrees
    assert not linkcheck.RoundTrip(50, 0, 0.2, [70.0, 71.0, 69.0]).agrees
    assert linkcheck.Loss(2, 1000, 981).agrees  # 1.9 % of 1000 against 2 %
    assert not linkcheck.Loss(0, 1000, 950).agrees  # 5 % lost on a link that loses none
    assert not linkcheck.Loss(3, 1000, 1000).agrees  # 3 % asked, none lost
    slow = linkcheck.Direction(100_000, 80.0, 120.0, sent_mbit=20)
    assert slow.checked
    assert not slow.agrees
    untried = linkcheck.Direction(100_000, 80.0, 120.0, sent_mbit=5)  # the sender was slower
    assert not untried.checked
    assert untried.agrees
    check = linkcheck.LinkCheck("wirefilter", trip, {"up": linkcheck.Loss(0, 200, 200)},
                                {"up": slow})  # fmt: skip
    again = linkcheck.LinkCheck.from_dict(json.loads(json.dumps(check.as_dict())))
    assert again == check
    assert "DOES NOT agree" in check.describe()


def test_rate_shaping_end_to_end_matches_bytes_over_rate() -> None:
    """A rate-only link on the kernel's qdiscs: the link check's verdict holds, each
    direction's datagrams arrive at its rate, and nothing of the link is left after."""
    profile = resolve(None, down_mbit=24, up_mbit=6)
    with ServiceNetwork(profile, engine="netem") as network:
        assert network.namespace in namespaces()
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", network.host_device],
                                capture_output=True, text=True).stdout  # fmt: skip
        assert "tbf" in qdiscs
        assert "rate 6Mbit" in qdiscs
        checked = linkcheck.check(network)
    assert set(checked.rates) == {"up", "down"}
    assert checked.agrees, checked.describe()
    assert network.namespace not in namespaces()
    assert network.host_device not in links()


def test_wirefilter_makes_the_round_trip_and_the_loss_it_is_asked_for() -> None:
    """No netem needed: 40 ms and 2 % each way through wirefilter, checked by its own
    probes; its settings changed in place; the TAP devices and processes gone after."""
    profile = resolve(None, rtt_ms=40, loss_pct=2)
    with ServiceNetwork(profile, engine="wirefilter") as network:
        assert network.engine == "wirefilter"
        record = network.describe_engine()
        assert record["wirefilter"] == (
            f"wirefilter -d 20 -l 2 -M {network._emulator.management}"  # type: ignore[union-attr]
        )
        # The unshaped directions are held to what the engine carries (tbf).
        assert any("tbf" in line for line in record["tc"])  # type: ignore[union-attr]
        checked = linkcheck.check(network)
        assert checked.agrees, checked.describe()
        assert checked.round_trip.measured_ms >= 40
        network.reshape(resolve(None, rtt_ms=10))
        shorter = linkcheck.check(network)
        assert shorter.agrees, shorter.describe()
        assert shorter.round_trip.measured_ms < checked.round_trip.measured_ms
        assert emulators()
    wait_for(lambda: nothing_left(os.getpid()), 10, "the wirefilter link's removal")


def test_the_netem_path_where_the_kernel_has_it() -> None:
    if not netem_available():
        pytest.skip("this kernel has no netem (sch_netem): wirefilter makes delay and loss here")
    with ServiceNetwork(resolve(None, rtt_ms=30, loss_pct=1), engine="netem") as network:
        checked = linkcheck.check(network)
    assert checked.engine == "netem"
    assert checked.agrees, checked.describe()


def bench(out: Path, *args: str, ports: tuple[int, int]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "client.bench", "--start-services", "--models", "echo",
            "--concurrency", "1", "--window", "1", "--max-windows", "2", "--stable-windows",
            "2", "--warmup", "0.5", "--frames", "4", "--out", str(out), *args]  # fmt: skip
    env = {**os.environ, "FACEWIRE_REST_PORT": str(ports[0]),
           "FACEWIRE_GRPC_PORT": str(ports[1])}  # fmt: skip
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)


def p50s(run: dict[str, Any]) -> dict[str, float]:
    return {p["protocol"]: p["latency_ms"]["p50"] for p in run["points"]}


def test_make_bench_across_a_round_trip_with_loss(tmp_path: Path) -> None:
    """--rtt-ms 20 --loss-pct 2 through wirefilter: no errors, the engine and its check
    recorded, and no request faster than the link's own measured round trip."""
    done = bench(tmp_path, "--rtt-ms", "20", "--loss-pct", "2", "--link-engine", "wirefilter",
                 ports=(18701, 18702))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "results.json").read_text())
    assert run["network"]["rtt_ms"] == 20
    assert run["link"]["engine"]["engine"] == "wirefilter"
    assert run["link"]["limits"]["max_mbit"] > 0
    check = linkcheck.LinkCheck.from_dict(run["link"]["check"])
    assert check.agrees, check.describe()
    assert all(p["error_count"] == 0 for p in run["points"])
    for protocol, p50 in p50s(run).items():
        assert p50 >= check.round_trip.measured_ms, protocol
    report = (tmp_path / "report.md").read_text()
    assert "- **Link engine:** wirefilter" in report
    assert "- **Link check:** wirefilter: round trip" in report
    wait_for(lambda: nothing_left(os.getpid()), 10, "the link's removal")


def test_a_new_connection_per_request_pays_at_least_a_round_trip_more(tmp_path: Path) -> None:
    """Across 30 ms: REST with a new connection per request against REST kept alive, in
    units of the link's measured round trip (TCP's handshake is one)."""
    kept = bench(tmp_path / "kept", "--rtt-ms", "30", "--protocols", "rest",
                 ports=(18703, 18704))  # fmt: skip
    fresh = bench(tmp_path / "fresh", "--rtt-ms", "30", "--protocols", "rest",
                  "--new-connection-per-request", ports=(18705, 18706))  # fmt: skip
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    runs = [json.loads((tmp_path / n / "results.json").read_text()) for n in ("kept", "fresh")]
    rtt = max(r["link"]["check"]["round_trip"]["measured_ms"] for r in runs)
    assert p50s(runs[1])["rest"] - p50s(runs[0])["rest"] >= rtt


def test_a_profile_the_kernel_or_engine_cannot_make_refuses_in_one_line(tmp_path: Path) -> None:
    """netem asked for on a kernel without it, and a rate beyond what wirefilter
    carries here: each refused in one line, before anything runs."""
    cases = [("--link-engine", "wirefilter", "--down-mbit",
              str(round(limits.known("wirefilter").max_mbit)))]  # fmt: skip
    if not netem_available():
        cases.append(("--link-engine", "netem", "--network", "cable"))
    for n, case in enumerate(cases):
        out = tmp_path / str(n)
        argv = [sys.executable, "-m", "client.bench", *case, "--out", str(out)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert ("no netem" in lines[0]) if "netem" in case else ("beyond" in lines[0])
        assert not out.exists()  # refused before anything ran


def test_make_linkcheck_checks_a_profile_and_refuses_what_the_engine_cannot_carry(
    tmp_path: Path,
) -> None:
    args = ["--link-engine", "wirefilter", "--network", "lte", "--network", "lan"]
    done, tmp_path = make_results("linkcheck", "linkcheck-results", tmp_path, args, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "linkcheck.json").read_text())
    carried = result["limits"]["wirefilter"]["max_mbit"] * limits.CARRY_SHARE  # this run's
    rows = {r["profile"]["name"]: r for r in result["profiles"]}
    assert rows["lte"]["check"]["agrees"]
    assert rows["lte"]["check"]["round_trip"]["measured_ms"] >= 70
    if carried < 1000:
        assert "beyond what wirefilter carries" in rows["lan"]["refused"]
    else:
        assert rows["lan"]["check"]["agrees"]
    assert result["limits"]["wirefilter"]["added_rtt_ms"] >= 0
    rebuilt = subprocess.run([sys.executable, "-m", "client.network", "report", str(tmp_path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert rebuilt.stdout == (tmp_path / "linkcheck.md").read_text()


def hold_a_link(how: str, engine: str) -> subprocess.Popen[str]:
    """A child that makes a link with a round trip (``how``: "with" or "enter"), prints
    its namespace and sleeps: something to interrupt or kill."""
    make = f"ServiceNetwork(resolve(None, down_mbit=10, up_mbit=10, rtt_ms=4), engine={engine!r})"
    if engine == "netem":
        make = "ServiceNetwork(resolve(None, down_mbit=10, up_mbit=10), engine='netem')"
    opening = f"with {make} as n:\n    " if how == "with" else f"n = {make}.__enter__()\n"
    indent = "    " if how == "with" else ""
    script = (
        "import time\n"
        "from client.network.namespace import ServiceNetwork\n"
        "from client.network.profiles import resolve\n"
        f"{opening}print(n.namespace, flush=True)\n"
        f"{indent}time.sleep(60)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip


@pytest.mark.parametrize("engine", ["netem", "wirefilter"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_link_is_removed_on_ctrl_c_and_sigterm(signum: signal.Signals, engine: str) -> None:
    with hold_a_link("with", engine) as child:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert name in namespaces()
        child.send_signal(signum)
        child.wait(30)
    wait_for(lambda: nothing_left(child.pid), 10, "the link's removal")


@pytest.mark.parametrize("engine", ["netem", "wirefilter"])
def test_a_killed_runs_link_is_removed_by_the_next_run(engine: str) -> None:
    with hold_a_link("enter", engine) as child:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        child.kill()  # SIGKILL: nothing of its own runs
        child.wait(10)
    assert name in namespaces()
    assert name in remove_stale()
    wait_for(lambda: nothing_left(child.pid), 10, "the killed run's link")


def test_make_run_headless_behind_a_link(tmp_path: Path) -> None:
    """make run puts the same link between its comparison and the services it starts,
    and the comparison says which link it crossed."""
    argv = [sys.executable, "-m", "client.lab", "--network", "lte", "--frames", "6"]
    env = {
        key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env |= {"FACEWIRE_REST_PORT": "18711", "FACEWIRE_GRPC_PORT": "18712",
            "FACEWIRE_STORAGE_DIR": str(tmp_path)}  # fmt: skip
    before = our_namespaces()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "starting both services behind lte: 12 Mbit/s down / 12 Mbit/s up, 70 ms RTT" in out
    assert "link: lte" in out
    assert "link check: wirefilter: round trip" in out
    assert "wirefilter" in out
    for protocol in ("rest", "grpc", "grpc-stream"):
        assert f"│ {protocol} " in out
    assert "facewire REST stopped" in out
    wait_for(lambda: not our_namespaces() - before, 10, "the link's removal")
