"""``python -m client.bench.asgi``, short: the REST app under uvicorn, Hypercorn and
Granian answers every echo request, and the h2c rows really spoke HTTP/2 (h2load's own
report of the protocol it negotiated, not a log line of ours)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from client.bench.asgi import SERVERS, report
from tests.servers import ROOT


def test_every_server_answers_every_request_in_each_http_version(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "client.bench.asgi", "--rounds", "1", "--requests", "60",
            "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "asgi.json").read_text())
    ran = {(row["server"], row["http"]) for row in document["rows"]}
    assert ran == {(server, http) for server, versions in SERVERS.items() for http in versions}
    for row in document["rows"]:
        (taken,) = row["rounds"]
        assert taken["answered"] == 60, row
        assert taken["negotiated"] == row["http"], row
        assert taken["cpu_us"] > 0, row
    assert (tmp_path / "asgi.md").read_text() == report(document)
