"""Runs a ``make`` target as a user would: from the repository root, with ``ARGS``, its
results under its default, relative folder (``attack-results/<time>/``, …)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from client.processes import Child
from tests.servers import ROOT, ServiceProcess


def make(target: str, args: Sequence[str] = (), timeout: float = 600,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``make <target> ARGS="<args>"`` in the repository root."""
    return subprocess.run(make_argv(target, args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)  # fmt: skip


Made = subprocess.CompletedProcess[str]


def make_results(target: str, folder: str, keep: Path, args: Sequence[str] = (),
                 timeout: float = 600) -> tuple[Made, Path]:  # fmt: skip
    """``make <target>`` writing to its default folder: the run, and the one folder it
    wrote under ``ROOT/folder``, moved into ``keep`` (so the checkout stays clean)."""
    base = ROOT / folder
    existed = base.exists()
    before = set(base.iterdir()) if existed else set()
    try:
        done = make(target, args, timeout)
    finally:
        written = sorted(set(base.iterdir()) - before) if base.exists() else []
        moved = [Path(shutil.move(path, keep / path.name)) for path in written]
        if not existed and base.exists() and not any(base.iterdir()):
            base.rmdir()
    assert len(moved) == 1, (written, done.stdout + done.stderr)
    return done, moved[0]


def make_argv(target: str, args: Sequence[str] = ()) -> list[str]:
    argv = ["make", "--no-print-directory", target]
    return [*argv, "ARGS=" + " ".join(args)] if args else argv


class MakeProcess(ServiceProcess):
    """``make <target>`` left running (``make serve``, ``make gui``), its output and
    addresses read as a ServiceProcess's. A signal goes to what make runs, as a user's
    Ctrl-C reaches it; make then exits with its status."""

    def __init__(self, target: str, env: dict[str, str], args: Sequence[str] = (),
                 unset: tuple[str, ...] = ()) -> None:  # fmt: skip
        Child.__init__(self, f"make-{target}", (), env, unset=unset, cwd=ROOT,
                       command=make_argv(target, args))  # fmt: skip
        self.process = self.popen

    def _children(self) -> list[int]:
        pid = self.popen.pid
        try:
            listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(child) for child in listed.split()]

    def stop(self, grace: float = 30.0, signum: int = signal.SIGTERM) -> int:
        for child in self._children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)
        return self.popen.wait(grace)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if self.popen.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(10.0)
        Child.stop(self)
