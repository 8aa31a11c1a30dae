"""What the numbers were measured on: machine and package versions."""

from __future__ import annotations

import importlib.metadata
import platform

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
