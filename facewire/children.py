"""Child processes that never outlive the process that started them.

Every program facewire starts (the services under ``facewire.serve``, load processes,
Xvfb, nginx, dask, the link emulator) goes through ``spawn``: on Linux the child asks
the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``), so a benchmark
killed with SIGKILL leaves nothing serving behind it. ``stop`` is the one way to end
one: a signal, a grace period, then SIGKILL.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1

#: What a file argument of ``spawn`` may be (as ``subprocess.Popen`` takes it).
Stream = int | IO[bytes] | None


def _die_with_parent(signum: int) -> Callable[[], None]:
    def arm() -> None:
        """In the child, before exec: ``signum`` when the parent dies, even by SIGKILL."""
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signum)

    return arm


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = None,
    stderr: Stream = None,
    pass_fds: Sequence[int] = (),
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``argv``; it gets ``death_signal`` if this process dies first (SIGTERM: a
    service drains; nginx wants SIGQUIT).

    The kernel sends that signal when the *thread* that forked the child ends, so it
    is armed only from the main thread: a child started from a worker thread (which
    may end before the process) goes without it rather than die early.
    """
    arm = threading.current_thread() is threading.main_thread()
    # The callers' argv are their own programs and arguments, never user input.
    return subprocess.Popen(  # noqa: S603
        list(argv),
        env=None if env is None else dict(env),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        pass_fds=tuple(pass_fds),
        preexec_fn=_die_with_parent(death_signal) if arm else None,
    )


def stop(popen: subprocess.Popen[bytes], grace: float, signum: int = signal.SIGTERM) -> int:
    """``signum``, ``grace`` seconds to exit, then SIGKILL; the exit status."""
    if popen.poll() is None:
        popen.send_signal(signum)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return popen.returncode
