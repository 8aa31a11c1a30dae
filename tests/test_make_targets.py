"""Every target ``make help`` lists runs in CI, in its quick form, through make itself and
with its default paths (relative result folders included), or is named below with why
not. The targets that write results run in the tests of their tools (``make_results``,
``MakeProcess`` in tests/make.py); the rest run here."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from client.processes import free_port
from client.readiness import grpc_serving, rest_ready
from tests.make import MakeProcess, make, make_results
from tests.servers import ROOT, wait_for

#: Targets no test runs, and why.
NOT_RUN = {
    "test": "CI's own command: a test cannot run the suite it is part of",
    "lint": "`make test` runs it before the tests, in CI",
    "docker-lint": "`make lint` runs it",
    "clean": "removes the virtual environment the tests run in",
    "constraints": "re-resolves every pin from PyPI, so its answer follows PyPI, not this "
    "code; tests/test_docker_files.py checks the committed file instead",
    "screenshot": "rewrites docs/img/gui-both.png from tests/test_gui.py's own run, which CI runs",
}
INVOKED = re.compile(
    r'(?:\bmake(?:_results)?|MakeProcess|\.make)\(\s*"([a-z-]+)"'
    r'|"--no-print-directory", "([a-z-]+)"'
)


def help_targets() -> set[str]:
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


@pytest.mark.unit
def test_every_make_target_runs_in_a_test_or_says_why_not() -> None:
    targets = help_targets()
    invoked = set()
    for path in (ROOT / "tests").glob("*.py"):
        for match in INVOKED.finditer(path.read_text()):
            invoked.add(match.group(1) or match.group(2))
    invoked.discard("help")  # help_targets runs it
    invoked |= {*INSTALLING, *GENERATING, *SERVING}  # run below
    assert not invoked & set(NOT_RUN), invoked & set(NOT_RUN)
    missing = targets - invoked - set(NOT_RUN) - {"help"}
    assert not missing, f"make targets no test runs: {sorted(missing)}"
    assert not set(NOT_RUN) - targets, "NOT_RUN names a target make help no longer lists"


INSTALLING = ("setup", "system-deps")
#: Targets that write committed files, and what they write.
GENERATING = {
    "proto": ["facewire/v1", "facewire/oip"],
    "fixtures": ["client/bench/fixtures", "client/assets"],
    "format": ["."],
}
SERVING = {"serve": ("rest", "grpc"), "run-rest": ("rest",), "run-grpc": ("grpc",)}


@pytest.mark.parametrize("target", INSTALLING)
def test_the_install_targets_are_idempotent(target: str) -> None:
    done = make(target, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_test_fast_runs_the_unit_tier() -> None:
    done = make("test-fast", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]


@pytest.mark.parametrize(("target", "generated"), GENERATING.items())
def test_the_targets_that_write_sources_reproduce_what_is_committed(
    target: str, generated: list[str]
) -> None:
    """Each leaves every file as it found it: as committed, on CI's clean checkout."""

    def state() -> str:
        status = ["git", "status", "--porcelain", "--", *generated]
        diff = ["git", "diff", "--", *generated]
        return "".join(subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout for argv in (status, diff))  # fmt: skip

    before = state()
    done = make(target, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert state() == before, f"make {target} changed files"


def service_env(tmp_path: Path) -> dict[str, str]:
    return {"FACEWIRE_REST_PORT": str(free_port()), "FACEWIRE_GRPC_PORT": str(free_port()),
            "FACEWIRE_STORAGE_DIR": str(tmp_path)}  # fmt: skip


@pytest.mark.parametrize(("target", "protocols"), SERVING.items())
def test_the_serving_targets_serve_and_stop_on_ctrl_c(
    target: str, protocols: tuple[str, ...], tmp_path: Path
) -> None:
    env = service_env(tmp_path)
    rest = f"http://127.0.0.1:{env['FACEWIRE_REST_PORT']}"
    grpc_target = f"127.0.0.1:{env['FACEWIRE_GRPC_PORT']}"
    with MakeProcess(target, env) as served:
        if "rest" in protocols:
            wait_for(lambda: rest_ready(rest), what=f"make {target}: REST", timeout=90)
        if "grpc" in protocols:
            wait_for(lambda: grpc_serving(grpc_target), what=f"make {target}: gRPC", timeout=90)
        assert served.stop(30.0, signal.SIGINT) == 0, served.output  # a user's Ctrl-C


def test_make_bench_writes_its_default_results_folder(tmp_path: Path) -> None:
    args = ["--window", "0.4", "--max-windows", "3", "--warmup", "0.2", "--frames", "4",
            "--protocols", "rest,grpc", "--models", "echo", "--concurrency", "1"]  # fmt: skip
    done, out = make_results("bench", "bench-results", tmp_path, args, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "results.json").is_file()
    assert (out / "report.md").is_file()
