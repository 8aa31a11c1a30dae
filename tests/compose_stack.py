"""The compose stack for tests: a Docker engine, a copy of the checkout, make's targets.

Everything goes through the project's own entry points (``make docker-engine``,
``make docker-base``, ``make docker-up``, ``make docker-down``), run in a copy of the
working tree as a fresh clone holds it, under a compose project, image tag and ports of
its own: a developer's own stack (on 8001 and 50051) is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.processes import free_port
from tests.servers import ROOT, wait_for

SERVICES = ("rest", "grpc")


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def docker_engine() -> Iterator[None]:
    """An engine that answers: the one running, or one started here (and stopped after,
    pass or fail) by ``make docker-engine``. Failing beats skipping: `make test` installs
    the engine (scripts/system-deps.sh) and runs as root."""
    if docker_answers():
        yield
        return
    started = subprocess.run(
        ["make", "--no-print-directory", "docker-engine"], cwd=ROOT, capture_output=True, text=True
    )
    if started.returncode != 0:
        raise RuntimeError(f"no Docker engine, and none could be started:\n{started.stderr}")
    try:
        yield
    finally:
        subprocess.run(["make", "--no-print-directory", "docker-engine-stop"], cwd=ROOT,
                       check=False)  # fmt: skip


def copy_checkout(destination: Path) -> Path:
    """The working tree's tracked and untracked-but-not-ignored files, as a clone of the
    committed tree plus the changes in progress would hold them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # a deleted file is still listed until the index changes
            target = destination / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@dataclass
class Stack:
    """One compose project in ``checkout``; ``make(...)`` runs its targets there."""

    checkout: Path
    name: str
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.name,
            "FACEWIRE_IMAGE_TAG": self.name,
            "FACEWIRE_PUBLISH_REST_PORT": str(self.ports["rest"]),
            "FACEWIRE_PUBLISH_GRPC_PORT": str(self.ports["grpc"]),
            "FACEWIRE_PUBLISH_METRICS_PORT": str(self.ports["metrics"]),
        }
        for inherited in ("FACEWIRE_UID", "FACEWIRE_GID", "FACEWIRE_AUTH_TOKEN"):
            env.pop(inherited, None)
        return env

    @property
    def storage(self) -> Path:
        return self.checkout / "storage"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['rest']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def run(
        self, *argv: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.checkout,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def make(self, target: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run("make", "--no-print-directory", target, timeout=timeout)

    def compose(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = self.run("./scripts/compose.sh", "--", *args, timeout=120, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def container(self, service: str) -> str:
        found = self.compose("ps", "-a", "-q", service).split()
        assert found, f"no {service} container"
        return found[0]

    def inspect(self, thing: str) -> dict[str, Any]:
        done = self.run("docker", "inspect", thing, timeout=30)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout)[0])

    def health(self, service: str) -> str:
        state = self.inspect(self.container(service))["State"]
        return str(state.get("Health", {}).get("Status", "none"))

    def wait_healthy(self, service: str, timeout: float = 120) -> None:
        wait_for(lambda: self.health(service) == "healthy", timeout, f"{service} healthy")

    def service_pid(self, service: str) -> int:
        """The host PID of the service's Python process (tini's child, under ``init``)."""
        init = int(self.inspect(self.container(service))["State"]["Pid"])
        children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
        return int(children[0]) if children else init

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service)

    def remove_images(self) -> None:
        """This stack's images, and the untagged ones its broken build left. The base
        (`make docker-base`) and the dependency stage stay as build cache, so the next
        run neither debootstraps nor downloads the wheels again."""
        for service in SERVICES:
            self.run("docker", "rmi", "--force", f"facewire-{service}:{self.name}", timeout=120)
        label = "label=org.opencontainers.image.title=facewire"
        self.run("docker", "image", "prune", "--force", "--filter", label, timeout=120)


def new_stack(checkout: Path) -> Stack:
    name = f"fwtest{os.getpid()}"
    return Stack(checkout, name, {k: free_port() for k in ("rest", "grpc", "metrics")})
