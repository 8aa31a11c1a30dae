"""The Docker files without an engine: pins, compose's settings, the compose finder.

The stack itself runs in tests/test_docker.py; these need no engine and run first.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml  # Compose prints YAML; PyYAML comes with the dev tools (schemathesis)

from tests.servers import ROOT

COMPOSE_SH = ROOT / "scripts" / "compose.sh"


def compose_config(env: dict[str, str] | None = None) -> dict[str, object]:
    """docker-compose.yml as Compose resolves it (every profile on), as JSON."""
    done = subprocess.run(
        [str(COMPOSE_SH), "--", "config"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(yaml.safe_load(done.stdout))


def test_constraints_pin_exactly_what_the_images_install() -> None:
    """A resolve of the image's requirement set against docker/constraints.txt (pip's own
    resolver, from PyPI) installs nothing unpinned and leaves no pin unused."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "constraints.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.unit
def test_constraints_check_fails_on_a_stale_file() -> None:
    problems = load_script("constraints").problems
    pins = {"numpy": "1.0", "gone": "2.0"}
    resolved = {"numpy": ("numpy", "2.4.6"), "pillow": ("pillow", "12.3.0")}
    assert problems(pins, resolved) == [
        "mismatch: numpy pinned 1.0, resolved 2.4.6",
        "unpinned: pillow==12.3.0 is installed but not in the file",
        "stale: gone==2.0 is pinned but not installed",
    ]


def host_ips(env: dict[str, str] | None = None) -> list[str]:
    """The host address of every published port (v1 prints "IP:HOST:CONTAINER/tcp",
    v2 the long form)."""
    services = compose_config(env)["services"]
    assert isinstance(services, dict)
    ports = [p for s in services.values() for p in s.get("ports", [])]
    return [p["host_ip"] if isinstance(p, dict) else p.split(":")[0] for p in ports]


@pytest.mark.unit
def test_published_ports_bind_loopback_unless_opened() -> None:
    assert host_ips() == ["127.0.0.1"] * 3  # REST, gRPC and gRPC's metrics
    assert host_ips({"FACEWIRE_PUBLISH_HOST": "0.0.0.0"}) == ["0.0.0.0"] * 3


@pytest.mark.unit
def test_compose_keeps_the_images_health_checks_and_user() -> None:
    services = compose_config()["services"]
    assert isinstance(services, dict)
    assert set(services) == {"rest", "grpc", "rest-host", "grpc-host"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    assert "--uid 10001 --gid 10001" in dockerfile
    for name, service in services.items():
        assert "healthcheck" not in service, f"{name} overrides the image's health check"
        assert service["user"] == "10001:10001"  # FACEWIRE_UID/GID unset: the image's
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert service["volumes"][0]["type"] == "bind"  # a missing folder is an error


def fake_tools(folder: Path, compose_v2: bool) -> dict[str, str]:
    """A PATH with a `docker` that has (or lacks) the compose plugin, and a v1 binary."""
    folder.mkdir()
    v2 = 'echo "v2 $*"; exit 0' if compose_v2 else 'echo "unknown command" >&2; exit 1'
    (folder / "docker").write_text(f'#!/bin/sh\n[ "$1" = compose ] && {{ shift; {v2}; }}\n')
    (folder / "docker-compose").write_text('#!/bin/sh\necho "v1 $*"\n')
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:/usr/bin:/bin"}


@pytest.mark.unit
@pytest.mark.parametrize(("compose_v2", "used"), [(True, "v2"), (False, "v1")])
def test_the_compose_finder_prefers_v2_and_falls_back_to_v1(
    tmp_path: Path, compose_v2: bool, used: str
) -> None:
    env = fake_tools(tmp_path / "bin", compose_v2)
    done = subprocess.run(
        [str(COMPOSE_SH), "--", "ps", "-q"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{used} ps -q"
    chosen = subprocess.run(
        [str(COMPOSE_SH), "--", "ps"],
        env={**env, "COMPOSE": "docker-compose"},
        capture_output=True,
        text=True,
    )
    assert chosen.stdout.strip() == "v1 ps"


@pytest.mark.unit
def test_docker_up_refuses_without_an_engine(tmp_path: Path) -> None:
    env = fake_tools(tmp_path / "bin", compose_v2=True)
    (tmp_path / "bin" / "docker").write_text("#!/bin/sh\nexit 1\n")  # `docker info` fails
    done = subprocess.run([str(COMPOSE_SH), "up"], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert re.search(r"no (compose|Docker engine)", done.stderr), done.stderr
