"""The protocol libraries the services run on, against the first releases that fixed
the attacks the suite tries: an update that goes back past one fails the suite."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

#: distribution → (first fixed release, what it fixed).
KNOWN_FIXES = {
    "grpcio": ("1.59.3", "HTTP/2 Rapid Reset, CVE-2023-44487 (and 1.53.2's CVE-2023-32731)"),
    "h11": ("0.16.0", "request smuggling through chunked bodies, CVE-2025-43859"),
    "uvicorn": ("0.11.7", "log and header injection, CVE-2020-7694 / CVE-2020-7695"),
    "starlette": ("0.47.2", "multipart form memory, CVE-2025-54121"),
    "python-multipart": ("0.0.18", "boundary parsing DoS, CVE-2024-53981"),
}


def outdated() -> list[str]:
    """One line per installed library older than its fix."""
    lines = []
    for name, (fixed, what) in KNOWN_FIXES.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if Version(installed) < Version(fixed):
            lines.append(f"{name} {installed} is older than {fixed}, which fixed {what}")
    return lines
