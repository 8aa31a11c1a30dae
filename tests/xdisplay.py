"""A virtual X screen (Xvfb), key presses (xdotool) and screenshots (ImageMagick)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from client import xvfb
from tests.servers import wait_for

TOOLS = ("Xvfb", "xdotool", "import")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:  # `make test` installs them (scripts/system-deps.sh); failing beats skipping
        raise RuntimeError(f"the GUI tests need {missing}: run ./scripts/system-deps.sh")


@contextmanager
def virtual_display(width: int = 1366, height: int = 768) -> Iterator[str]:
    """An Xvfb screen (with the other tools checked first); yields its DISPLAY value."""
    require_tools()
    with xvfb.virtual_display(width, height) as display:
        yield display


class Screen:
    def __init__(self, display: str) -> None:
        self.env = {**os.environ, "DISPLAY": display}

    def _run(self, *args: str) -> str:
        return subprocess.run(
            args, env=self.env, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def window(self, title: str) -> str:
        def find() -> str | None:
            found = subprocess.run(
                ["xdotool", "search", "--name", title], env=self.env, capture_output=True, text=True
            ).stdout.split()
            return found[0] if found else None

        window = wait_for(find, 30, f"a window named {title!r}")
        self._run("xdotool", "windowfocus", "--sync", window)
        return window

    def geometry(self, window: str) -> dict[str, str]:
        """X, Y, WIDTH, HEIGHT (and SCREEN, WINDOW) as xdotool reports them."""
        return dict(
            line.split("=", 1)
            for line in self._run("xdotool", "getwindowgeometry", "--shell", window).split()
        )

    def origin(self, window: str) -> tuple[int, int]:
        fields = self.geometry(window)
        return int(fields["X"]), int(fields["Y"])

    def key(self, window: str, key: str) -> None:
        self._run("xdotool", "windowfocus", "--sync", window)
        self._run("xdotool", "key", key)

    def screenshot(self, path: Path) -> np.ndarray:
        self._run("import", "-window", "root", f"png:{path}")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None
        return image
