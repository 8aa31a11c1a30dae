"""Network profiles for real: a namespace, a veth pair and tc qdiscs (root), the rates
they shape measured end to end, the exact commands, and clean-up however a run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from client.network import linkcheck
from client.network.namespace import ServiceNetwork, netem_available, remove_stale
from client.network.profiles import PROFILES, Profile, ProfileError, resolve, tc_commands
from tests.servers import ROOT, wait_for

pytestmark = pytest.mark.timeout(300)


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def commands(profile_name: str, device: str, direction: str) -> list[str]:
    return [" ".join(c) for c in tc_commands(PROFILES[profile_name], device, direction)]


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


def test_profiles_resolve_with_custom_values_and_say_where_they_come_from() -> None:
    assert resolve(None) == PROFILES["loopback"]
    assert not resolve(None).shaped
    custom = resolve(None, down_mbit=20, up_mbit=8)
    assert custom.describe() == "custom: 20 Mbit/s down / 8 Mbit/s up (custom)"
    tuned = resolve("dsl", rtt_ms=80)
    assert (tuned.down_mbit, tuned.up_mbit, tuned.rtt_ms) == (1.5, 0.384, 80)
    assert "WebPageTest" in tuned.source
    rate_only = resolve("cable", rate_only=True)
    assert not rate_only.needs_netem
    assert (rate_only.down_mbit, rate_only.up_mbit) == (5, 1)
    with pytest.raises(ProfileError, match="unknown network profile"):
        resolve("moon")
    with pytest.raises(ProfileError, match="above 0"):
        resolve(None, up_mbit=0)
    for profile in PROFILES.values():
        assert profile.source  # every named profile says where its numbers come from


def test_rate_shaping_end_to_end_matches_bytes_over_rate() -> None:
    """A rate-only link: each direction's transfer takes its bytes ÷ its rate (±20 %),
    and nothing of the link is left after."""
    profile = resolve(None, down_mbit=24, up_mbit=6)
    with ServiceNetwork(profile) as network:
        assert network.namespace in namespaces()
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", network.host_device],
                                capture_output=True, text=True).stdout  # fmt: skip
        assert "tbf" in qdiscs
        assert "rate 6Mbit" in qdiscs
        directions = linkcheck.check(network)
    assert set(directions) == {"up", "down"}
    for name, direction in directions.items():
        assert direction.agrees, (name, direction)
    assert directions["down"].bytes == 4 * directions["up"].bytes  # the sizes follow the rates
    assert network.namespace not in namespaces()
    assert network.host_device not in links()


def test_a_delay_profile_refuses_in_one_line_without_netem(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "client.bench", "--network", "cable", "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if netem_available():  # a kernel with netem: the profile is made, not refused
        pytest.skip("this kernel has netem: the refusal does not apply")
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "no netem" in lines[0]
    assert "sch_netem" in lines[0]
    assert "--rate-only" in lines[0]
    assert not list(tmp_path.iterdir())  # refused before anything ran


def hold_a_link(how: str) -> subprocess.Popen[str]:
    """A child that makes a 10 Mbit/s link (``how``: "with" or "enter"), prints its
    namespace and sleeps: something to interrupt or kill."""
    make = "ServiceNetwork(resolve(None, down_mbit=10, up_mbit=10))"
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_link_is_removed_on_ctrl_c_and_sigterm(signum: signal.Signals) -> None:
    with hold_a_link("with") as child:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert name in namespaces()
        child.send_signal(signum)
        child.wait(30)
    assert name not in namespaces()
    assert f"fwh{child.pid}" not in links()


def test_a_killed_runs_link_is_removed_by_the_next_run() -> None:
    with hold_a_link("enter") as child:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        child.kill()  # SIGKILL: nothing of its own runs
        child.wait(10)
    assert name in namespaces()
    assert name in remove_stale()
    assert name not in namespaces()


def test_make_bench_behind_a_rate_only_profile(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "client.bench", "--start-services", "--protocols", "rest,grpc",
            "--models", "echo", "--concurrency", "1", "--window", "0.6", "--max-windows", "2",
            "--stable-windows", "2", "--warmup", "0.3", "--frames", "4",
            "--down-mbit", "40", "--up-mbit", "16", "--out", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "FACEWIRE_REST_PORT": "18701", "FACEWIRE_GRPC_PORT": "18702"}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "results.json").read_text())
    assert run["network"]["up_mbit"] == 16
    assert run["link_check"]["up"]["agrees"]
    assert run["link_check"]["down"]["agrees"]
    assert run["connections"].startswith("kept alive")
    report = (tmp_path / "report.md").read_text().splitlines()
    assert report[4].startswith("- **Network:** custom: 40 Mbit/s down / 16 Mbit/s up")
    assert report[5].startswith("- **Link check:**")
    assert all(p["error_count"] == 0 for p in run["points"])
    # An echo of a 1280×720 frame is its bytes on a 16 Mbit/s upload: its median time
    # agrees with bytes ÷ rate (TCP/IP's headers add about 3 %, the protocols and the
    # answer's trip back a few more).
    for point in run["points"]:
        on_the_wire_ms = point["bytes_sent"] * 8 / 16e6 * 1000
        assert 0.95 < point["latency_ms"]["p50"] / on_the_wire_ms < 1.25, point["latency_ms"]
    wait_for(lambda: "fw" not in namespaces().replace("fwprobe", ""), 10, "the link's removal")


def test_make_run_headless_behind_a_link(tmp_path: Path) -> None:
    """make run puts the same link between its comparison and the services it starts."""
    argv = [sys.executable, "-m", "client.lab", "--down-mbit", "50", "--up-mbit", "50",
            "--frames", "12"]  # fmt: skip
    env = {
        key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env |= {"FACEWIRE_REST_PORT": "18711", "FACEWIRE_GRPC_PORT": "18712",
            "FACEWIRE_STORAGE_DIR": str(tmp_path)}  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "starting both services behind custom: 50 Mbit/s down / 50 Mbit/s up" in out
    for protocol in ("rest", "grpc", "grpc-stream"):
        assert f"│ {protocol} " in out
    assert "facewire REST stopped" in out
    wait_for(lambda: "fw" not in namespaces().replace("fwprobe", ""), 10, "the link's removal")
