"""Child processes: start one, wait until it is ready, stop it (the one way ``make
run``, the benchmark, perf, soak and the tests all do it).

A child is ``python -m <module>`` with extra environment, its output (stdout and
stderr) in a log file, so that a failure can point at it and tests can read it.
Stopping sends SIGTERM (a service drains and exits 0), waits for the grace period,
then sends SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from facewire.children import spawn
from facewire.children import stop as stop_process

#: Where children log when no log file is named: removed when this process exits.
_LOGS: Path | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _default_log(module: str) -> Path:
    global _LOGS
    if _LOGS is None:
        _LOGS = Path(tempfile.mkdtemp(prefix="facewire-children-"))
        atexit.register(shutil.rmtree, _LOGS, ignore_errors=True)
    fd, name = tempfile.mkstemp(prefix=f"{module}-", suffix=".log", dir=_LOGS)
    os.close(fd)
    return Path(name)


class Child:
    """``python -m module *args`` with ``env`` added (and ``unset`` removed); its output
    goes to ``log`` (a file of its own when not named), or with ``terminal``, to this
    process's own terminal, for a person to watch. ``prefix`` runs it through another
    command first (``ip netns exec NAME``: inside a network namespace); ``command``
    runs that instead of ``python -m module`` (``make serve``: a make target as a user
    runs it), ``module`` then naming it in messages."""

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        *,
        log: Path | None = None,
        terminal: bool = False,
        unset: Sequence[str] = (),
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
        command: Sequence[str] | None = None,
    ) -> None:
        self.module = module
        self.log = None if terminal else log or _default_log(module)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        for name in unset:
            full_env.pop(name, None)
        with contextlib.ExitStack() as files:
            out = None if self.log is None else files.enter_context(open(self.log, "wb"))
            # Settings travel in the environment; the child dies with this process.
            self.popen = spawn(
                [*prefix, *(command or (sys.executable, "-m", module, *args))],
                env=full_env,
                cwd=cwd,
                stdin=None,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
            )

    @property
    def output(self) -> str:
        """Everything it printed so far (a child on the terminal keeps none)."""
        return "" if self.log is None else self.log.read_text(errors="replace")

    @property
    def where(self) -> str:
        return f"see {self.log}" if self.log is not None else "see its output above"

    def wait_until(self, is_ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll ``is_ready`` until it holds; fail at once if the child exits first."""
        deadline = time.monotonic() + timeout
        while not is_ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.popen.returncode}; {self.where}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} was not ready after {timeout:.0f}s; {self.where}")
            time.sleep(0.05)  # polling another process's readiness

    def wait_for_output(self, pattern: str, timeout: float = 30.0, since: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the output from offset ``since`` on."""
        compiled = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = compiled.search(self.output, since)
            if match is not None:
                found.append(match)
            return match is not None

        self.wait_until(seen, f"{self.module} (waiting for {pattern!r})", timeout)
        return found[0]

    def rss_mib(self) -> float:
        """Resident memory now, from /proc."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        kib = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        return kib / 1024

    def cpu_s(self) -> float:
        """CPU seconds the process has used so far, all threads, user and system."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace: float = 30.0, signum: int = signal.SIGTERM) -> int:
        """``signum`` (SIGTERM: drain), ``grace`` seconds, then SIGKILL; the exit status
        (0: it drained and exited cleanly)."""
        return stop_process(self.popen, grace, signum)

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
