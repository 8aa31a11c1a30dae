"""What the numbers were measured on: machine and package versions."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from datetime import UTC, datetime

from facewire.dataplane import cpu_count as cores

PACKAGES = ("facewire", "fastapi", "uvicorn", "starlette", "grpcio", "protobuf", "httpx",
            "numpy", "opencv-python", "opencv-python-headless", "hdrhistogram")  # fmt: skip


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict[str, object]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def run_record(kind: str, started: float) -> dict[str, object]:
    """What every results file begins with: its kind and format version, when it was
    made, how long the run took (``started``: its ``time.time()``), and the machine."""
    return {
        kind: 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "machine": describe(),
    }
