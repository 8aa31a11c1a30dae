"""Schemathesis against the REST service's own OpenAPI schema: every documented
operation, with generated parameters and bodies (valid and invalid), must never answer
5xx, and the service must go on answering.

Schemathesis runs as its CLI in a child process: its pytest integration does not
support pytest 9 yet.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from facewire.settings import Settings
from tests.servers import rest_server


def test_no_operation_ever_answers_5xx(tmp_path: Path) -> None:
    with rest_server(Settings(storage_dir=tmp_path / "storage", threads=2)) as url:
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "30", "--seed", "1",
             "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path)],
            cwd=tmp_path,  # schemathesis keeps a cache in .schemathesis/ where it runs
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
        alive = httpx.get(f"{url}/healthz", timeout=10).status_code
        schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    operations = sum(len(methods) for methods in schema["paths"].values())
    tested = re.search(r"Tested: (\d+)", done.stdout)
    cases = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert tested is not None
    assert cases is not None, done.stdout[-2000:]
    assert int(tested.group(1)) == operations  # every documented operation was exercised
    assert int(cases.group(1)) == int(cases.group(2)) > 300
    assert alive == 200
