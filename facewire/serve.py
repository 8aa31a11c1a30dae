"""Runs both services as child processes: ``python -m facewire.serve`` (``make serve``).

Ctrl-C or SIGTERM is passed to both, and each drains before exiting. If one service
dies, the other is stopped too, so that a half-running lab is never left behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

from facewire.children import spawn

SERVICES = ("rest_service", "grpc_service")


def main() -> int:
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # Handlers first: a SIGTERM during start-up must reach the children started so far.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name in SERVICES:
        # SIGTERM (a clean drain) if this supervisor dies, even by SIGKILL.
        children.append(spawn([sys.executable, "-m", name], stdin=None))
        if stopping:
            stop(signal.SIGTERM, None)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)  # polling a child's exit; signals interrupt it at once
    if not stopping:
        for name, child in zip(SERVICES, children, strict=True):
            if child.poll() is not None:
                print(f"facewire.serve: {name} exited with {child.returncode}", file=sys.stderr)
        stop(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    return 0 if stopping and codes == [0, 0] else max(abs(c) for c in codes) or 1


if __name__ == "__main__":
    sys.exit(main())
