"""A virtual X screen (Xvfb) for running the GUI with no display: tests and ``make perf``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from facewire.children import spawn


def available() -> bool:
    return shutil.which("Xvfb") is not None


@contextmanager
def virtual_display(width: int = 1366, height: int = 768) -> Iterator[str]:
    """An Xvfb screen of ``width`` × ``height``; yields its DISPLAY value."""
    if not available():
        raise RuntimeError("Xvfb is not installed: run ./scripts/system-deps.sh")
    read_end, write_end = os.pipe()
    # A fixed program and arguments; Xvfb is found on PATH like any X tool.
    command = ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{width}x{height}x24",
               "-nolisten", "tcp"]  # fmt: skip
    xvfb = spawn(command, pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)  # fmt: skip
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()  # Xvfb writes its display number when ready
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(10)
