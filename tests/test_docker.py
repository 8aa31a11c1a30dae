"""The Docker path as a user takes it: make docker-base, docker-up, the clients, docker-down.

Real engine, real images, real containers, through the published ports. One compose
stack serves the module; the tests run in order and the last ones take it down.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.engine import encode_frame
from client.sources import open_source
from client.transports import PROTOCOLS, make_transport
from tests.compose_stack import SERVICES, Stack, copy_checkout, docker_engine, new_stack
from tests.gui_session import drive_gui
from tests.make import make_results
from tests.servers import ROOT, wait_for
from tests.xdisplay import Screen, virtual_display

# Building the images takes a minute or two the first time (the base, cached, more).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with docker_engine():
        built = new_stack(copy_checkout(tmp_path_factory.mktemp("checkout")))
        try:
            base = built.make("docker-base", timeout=900)
            assert base.returncode == 0, base.stdout + base.stderr
            up = built.make("docker-up")
            assert up.returncode == 0, up.stdout + up.stderr
            assert "compose: rest grpc healthy" in up.stdout
            yield built
        finally:
            built.run("./scripts/compose.sh", "down", timeout=120)
            built.remove_images()


def sample_frames(count: int) -> list[bytes]:
    source, _ = open_source("sample")
    try:
        return [encode_frame(n, source.read(), 90).jpeg for n in range(count)]
    finally:
        source.close()


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "records.csv", newline="") as f:
        return list(csv.DictReader(f))


def audit(*folders: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "facewire.audit", *map(str, folders)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_ports_user_filesystem_and_capabilities(stack: Stack) -> None:
    for service in SERVICES:
        container = stack.inspect(stack.container(service))
        bindings = [b for ports in container["NetworkSettings"]["Ports"].values() for b in ports]
        assert bindings
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
        host = container["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert "/tmp" in host["Tmpfs"]
        assert host["CapDrop"] == ["ALL"]
        assert host["Init"] is True
        # Run as the invoking user (make docker-up), and the image's own user is 10001.
        assert container["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        image = stack.inspect(container["Image"])
        assert image["Config"]["User"] == "10001:10001"
        # The image's health check, not one of compose's: the TLS-aware module.
        check = " ".join(container["Config"]["Healthcheck"]["Test"])
        assert f"{service}_service.healthcheck" in check
        status = Path(f"/proc/{stack.service_pid(service)}/status").read_text()
        effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
        assert int(effective.split()[1], 16) == 0, effective
        name = stack.container(service)
        assert stack.run("docker", "exec", name, "touch", "/opt/x").returncode != 0
        assert stack.run("docker", "exec", name, "touch", "/tmp/x").returncode == 0


def test_images_hold_only_what_the_services_import(stack: Stack) -> None:
    pins = {}
    for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    script = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        "print(json.dumps({'dists': {d.metadata['Name'].lower().replace('_', '-'): d.version"
        " for d in m.distributions()}, 'modules': [n for n in ('client', 'httpx', 'rich',"
        " 'matplotlib', 'hdrh', 'pytest', 'pip', 'setuptools') if u.find_spec(n)]}))"
    )
    for service in SERVICES:
        image = f"facewire-{service}:{stack.name}"
        done = stack.run("docker", "run", "--rm", image, "python", "-c", script, timeout=120)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        assert found["modules"] == [], found["modules"]
        dists = found["dists"]
        assert dists.pop("facewire") == "0.1.0"
        # Exactly the pins, less the installers the build removes.
        expected = {k: v for k, v in pins.items() if k not in ("pip", "setuptools")}
        assert dists == expected


def test_headless_comparison_against_the_containers(stack: Stack) -> None:
    env = {
        **os.environ,
        "FACEWIRE_REST_PORT": str(stack.ports["rest"]),
        "FACEWIRE_GRPC_PORT": str(stack.ports["grpc"]),
    }
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "FACEWIRE_AUTH_TOKEN"):
        env.pop(name, None)
    for model in ("haar", "echo"):
        argv = [sys.executable, "-m", "client.lab", "--model", model, "--frames", "20"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "using the services already running" in out
        for protocol in PROTOCOLS:
            assert re.search(rf"{protocol}: \d+ answers, 0 errors", out), out


def test_boxes_match_the_local_services(stack: Stack, rest_url: str) -> None:
    frames = sample_frames(12)
    local = make_transport("rest", rest_url, "unused:1")
    expected = [local.detect(f, model="haar", save=False, frame_id="").result for f in frames]
    local.close()
    assert any(r.boxes for r in expected), "the sample frames should show faces"
    for protocol in PROTOCOLS:
        transport = make_transport(protocol, stack.rest_url, stack.grpc_target)
        try:
            for frame, want in zip(frames, expected, strict=True):
                got = transport.detect(frame, model="haar", save=False, frame_id="").result
                assert (got.boxes, got.crop, got.image) == (want.boxes, want.crop, want.image)
        finally:
            transport.close()


def test_saves_land_on_the_host_as_the_invoking_user(stack: Stack) -> None:
    frame = sample_frames(1)[0]
    for protocol in PROTOCOLS:
        transport = make_transport(protocol, stack.rest_url, stack.grpc_target)
        try:
            reply = transport.detect(frame, model="haar", save=True, frame_id=f"save-{protocol}")
        finally:
            transport.close()
        folder = stack.storage / ("rest" if protocol == "rest" else "grpc")
        saved = folder / str(reply.result.saved_image)
        assert saved.stat().st_uid == os.getuid()
        assert (folder / "records.csv").stat().st_uid == os.getuid()
        assert f"save-{protocol}" in {r["frame_id"] for r in rows(folder)}
    done = audit(stack.storage / "rest", stack.storage / "grpc")
    assert done.returncode == 0, done.stdout


def test_a_killed_service_process_is_restarted_and_nothing_is_lost(stack: Stack) -> None:
    container = stack.container("grpc")
    restarts = stack.inspect(container)["RestartCount"]
    os.kill(stack.service_pid("grpc"), signal.SIGKILL)
    wait_for(lambda: stack.inspect(container)["RestartCount"] > restarts, 60, "Docker's restart")
    stack.wait_healthy("grpc")
    transport = make_transport("grpc", stack.rest_url, stack.grpc_target)
    try:
        reply = transport.detect(sample_frames(1)[0], model="haar", save=True, frame_id="after")
    finally:
        transport.close()
    assert reply.result.saved_image
    done = audit(stack.storage / "rest", stack.storage / "grpc")
    assert done.returncode == 0, done.stdout


def test_the_gui_against_the_containers(stack: Stack, tmp_path: Path) -> None:
    with virtual_display() as display:
        screen = Screen(display)
        drive_gui(screen, stack.rest_url, stack.grpc_target, stack.storage / "grpc", tmp_path)


def test_make_perf_against_the_containers(stack: Stack, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "client.bench.perf", "--quick", "--out", str(tmp_path),
            "--rest-url", stack.rest_url, "--grpc-target", stack.grpc_target]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "perf.json").read_text())
    measured = {row["target"] for row in report["targets"]}
    # What needs only the network; P4 and P7 read the services' own CPU and memory.
    assert measured == {"P1", "P2", "P3", "P5", "P6"}
    assert "--rest-url" in report["notes"]["not measured"]
    assert report["errors"] == {}


def test_make_docker_bench_measures_the_three_ways(stack: Stack, tmp_path: Path) -> None:
    args = ["--echo-requests", "40", "--haar-requests", "3"]  # its default bench-results/
    done, tmp_path = make_results("docker-bench", "bench-results", tmp_path, args)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "placement.json").read_text())
    assert report["errors"] == {}
    assert {(r["model"], r["protocol"]) for r in report["rows"]} == {
        (m, p) for m in ("echo", "haar") for p in PROTOCOLS
    }
    for row in report["rows"]:
        for way in ("local", "published", "host network"):
            assert row[f"{way} p50 ms"] > 0
        for way in ("published", "host network"):
            low, high = row[f"{way} cost 95% ms"]
            assert low <= row[f"{way} cost ms"] <= high
    assert "| echo | rest |" in (tmp_path / "placement.md").read_text()
    # Its stacks are gone again; this module's own is still up.
    names = stack.run("docker", "ps", "-a", "--format", "{{.Names}}").stdout
    assert "facewire-bench" not in names


def test_make_docker_down_drains_both_and_exits_0(stack: Stack) -> None:
    containers = {s: stack.container(s) for s in SERVICES}
    down = stack.make("docker-down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "rest exited 0, grpc exited 0" in down.stdout
    for container in containers.values():
        assert stack.run("docker", "inspect", container).returncode != 0  # removed


def test_make_docker_smoke_answers_saves_and_drains(stack: Stack) -> None:
    """After docker-down: the smoke target brings the stack up again, sends one saved
    frame per protocol, audits the storage and takes it down (the copy has no venv of
    its own: the checkout's runs the script's Python)."""
    env = {**stack.env, "PY": str(ROOT / ".venv" / "bin" / "python")}
    done = stack.run("make", "--no-print-directory", "docker-smoke", timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "docker-smoke: OK" in done.stdout


def test_plain_compose_up_refuses_storage_it_cannot_use(stack: Stack) -> None:
    """Without make: no FACEWIRE_UID (so 10001), folders made by someone else."""
    plain = stack.env
    shutil.rmtree(stack.storage)
    done = stack.run("./scripts/compose.sh", "--", "up", "-d", "--no-build", env=plain)
    assert done.returncode != 0
    assert "bind source path does not exist" in done.stdout + done.stderr
    stack.compose("down", env=plain)

    for service in SERVICES:
        (stack.storage / service).mkdir(parents=True)  # mode 755, not 10001's
    try:
        stack.compose("up", "-d", "--no-build", env=plain)
        line = "cannot start: saving is on, but the storage folder /data is not writable"
        for service in SERVICES:
            wait_for(lambda s=service: line in stack.logs(s), 60, f"{service}'s refusal")
            assert stack.health(service) != "healthy"
    finally:
        stack.compose("down", env=plain)


def test_a_broken_dockerfile_fails_docker_up_with_the_log_lines(stack: Stack) -> None:
    dockerfile = stack.checkout / "Dockerfile"
    original = dockerfile.read_text()
    dockerfile.write_text(original.replace("COPY grpc_service /src/grpc_service\n", ""))
    try:
        up = stack.make("docker-up")
        assert up.returncode != 0
        assert "the grpc service" in up.stderr, up.stderr
        assert "No module named grpc_service" in up.stderr, up.stderr
    finally:
        dockerfile.write_text(original)
        stack.run("./scripts/compose.sh", "down", timeout=120)
