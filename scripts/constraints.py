"""docker/constraints.txt: every distribution the service images install, pinned.

    python scripts/constraints.py --check   # exit 1 when the file is stale (a test runs it)
    python scripts/constraints.py --write   # re-resolve from PyPI and rewrite it

The images install exactly this file (``pip install --no-deps -r``), then facewire with
``--no-deps``. So the file must be the complete resolution of the images' requirement
set: ``.[headless]`` plus the installer itself (pip, and setuptools, which builds
facewire). ``--check`` resolves that set against the file with pip's own resolver
(``pip install --dry-run --report``) and fails on anything the file does not pin, on a
pin the resolution does not use, and on a pin that no longer satisfies pyproject.toml.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "docker" / "constraints.txt"
#: What the Dockerfile installs: the services with the headless OpenCV wheel, and the
#: tools that install and build them.
REQUIREMENTS = (".[headless]", "pip", "setuptools")
HEADER = """\
# Exact versions of every distribution the Docker images install (pip and setuptools
# included), resolved from pyproject.toml's `.[headless]`. The Dockerfile installs this
# file with --no-deps, so it must be complete: `make constraints` rewrites it, and
# tests/test_docker_files.py fails when it is stale.
"""


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def resolve(constraints: Path | None) -> dict[str, tuple[str, str]]:
    """What pip would install for REQUIREMENTS in an empty environment: {key: (name,
    version)}, facewire itself left out."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
                   "--ignore-installed", "--report", str(report), *REQUIREMENTS]  # fmt: skip
        if constraints is not None:
            command += ["--constraint", str(constraints)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"pip could not resolve {' '.join(REQUIREMENTS)}:\n{done.stderr}")
        installs = json.loads(report.read_text())["install"]
    resolved = {}
    for item in installs:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if canonicalize_name(name) != "facewire":
            resolved[canonicalize_name(name)] = (name, version)
    return resolved


def problems(pins: dict[str, str], resolved: dict[str, tuple[str, str]]) -> list[str]:
    found = []
    for key, (name, version) in sorted(resolved.items()):
        if key not in pins:
            found.append(f"unpinned: {name}=={version} is installed but not in the file")
        elif pins[key] != version:
            found.append(f"mismatch: {name} pinned {pins[key]}, resolved {version}")
    found += [f"stale: {key}=={pins[key]} is pinned but not installed" for key in sorted(
        set(pins) - set(resolved))]  # fmt: skip
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write:
        resolved = resolve(None)
        lines = [f"{name}=={version}" for _, (name, version) in sorted(resolved.items())]
        CONSTRAINTS.write_text(HEADER + "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} pins to {CONSTRAINTS.relative_to(ROOT)}")
        return 0
    found = problems(read_pins(CONSTRAINTS), resolve(CONSTRAINTS))
    for line in found:
        print(f"{CONSTRAINTS.relative_to(ROOT)}: {line}")
    if found:
        print("run `make constraints` to re-resolve it")
        return 1
    print(f"{CONSTRAINTS.relative_to(ROOT)} pins exactly what the images install")
    return 0


if __name__ == "__main__":
    sys.exit(main())
