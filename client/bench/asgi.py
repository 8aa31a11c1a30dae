"""``python -m client.bench.asgi``: which ASGI server should carry REST over HTTP/2?

The facewire REST app (the same factory, ``rest_service.app:app_from_env``, and the same
settings) under uvicorn (HTTP/1.1 only: the service's server), Hypercorn and Granian
(each serving HTTP/1.1 and h2c, HTTP/2 with prior knowledge, on one port). For each
server and HTTP version: echo requests at concurrency 1 on one connection, in rounds;
per round, the server's CPU per answer (its whole process tree, from /proc) and the
answers a second. HTTP/1.1 load comes from ``http.client`` in this process; h2c load
from h2load (nghttp2-client), whose report names the protocol it negotiated. Writes
``asgi.json`` and ``asgi.md`` under ``asgi-results/<UTC time>/``; docs/performance.md's
table is generated from the committed run by ``report``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib import request as urllib_request

from client.bench import FACE
from client.processes import Child, free_port
from facewire.settings import Settings

#: Each server, and the HTTP versions it serves on its one port.
SERVERS: dict[str, tuple[str, ...]] = {
    "uvicorn": ("http/1.1",),
    "hypercorn": ("http/1.1", "h2c"),
    "granian": ("http/1.1", "h2c"),
}
APP = "rest_service.app:app_from_env"
#: Hypercorn ends a connection after 1000 requests (keep_alive_max_requests): a round
#: stays under it, so that every round is one connection on every server.
ROUND_REQUESTS = 900
DETECT = "/v1/detect?model=echo"


def _command(server: str, port: int) -> list[str] | None:
    """How to start ``server`` on ``port`` (None: the service itself, on uvicorn)."""
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", f"{APP}()"]  # fmt: skip
    if server == "granian":
        granian = shutil.which("granian", path=str(Path(sys.executable).parent))
        assert granian is not None, "granian is not installed (pip install -e '.[asgi]')"
        return [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--http", "auto", "--loop", "uvloop", "--log-level", "warning",
                "--factory", APP]  # fmt: skip
    return None


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (Granian serves from a worker process)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = Path(f"/proc/{current}/task").iterdir()
            pending += [int(c) for t in tasks for c in (t / "children").read_text().split()]
        except OSError:
            continue  # it ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / 100  # USER_HZ, 100 on Linux


def _http1(port: int, requests: int, image: bytes) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answered = 0
    try:
        for _ in range(requests):
            connection.request("POST", DETECT, image, {"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            answered += response.status == 200
    finally:
        connection.close()
    return answered, "http/1.1"


def _h2c(port: int, requests: int, image: Path) -> tuple[int, str]:
    argv = ["h2load", "-n", str(requests), "-c", "1", "-m", "1", "-d", str(image),
            "-H", "content-type: image/jpeg", f"http://127.0.0.1:{port}{DETECT}"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603
    answered = re.search(r"status codes: (\d+) 2xx", out)
    protocol = re.search(r"Application protocol: (\S+)", out)
    return (int(answered.group(1)) if answered else 0), (protocol.group(1) if protocol else "?")


def _round(server: Child, http: str, port: int, requests: int) -> dict[str, Any]:
    before, start = _tree_cpu_s(server.popen.pid), time.perf_counter()
    if http == "h2c":
        answered, spoken = _h2c(port, requests, FACE)
    else:
        answered, spoken = _http1(port, requests, FACE.read_bytes())
    seconds = time.perf_counter() - start
    cpu = _tree_cpu_s(server.popen.pid) - before
    return {"answered": answered, "negotiated": spoken,
            "answers_per_s": round(answered / seconds, 1),
            "cpu_us": round(1e6 * cpu / max(answered, 1))}  # fmt: skip


def run(workdir: Path, rounds: int, requests: int, say: Any = print) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, versions in SERVERS.items():
        port = free_port()
        env = {"FACEWIRE_REST_PORT": str(port), "FACEWIRE_LOG_LEVEL": "warning",
               "FACEWIRE_STORAGE_DIR": str(workdir / "storage")}  # fmt: skip
        with Child("rest_service", env=env, log=workdir / f"{name}.log",
                   command=_command(name, port)) as server:  # fmt: skip
            health = functools.partial(_answers, f"http://127.0.0.1:{port}/healthz")
            server.wait_until(health, f"{name} on port {port}")
            for http in versions:
                _round(server, http, port, min(requests, 100))  # warm-up
                taken = [_round(server, http, port, requests) for _ in range(rounds)]
                rows.append({"server": name, "http": http, "rounds": taken})
                cpu = statistics.median(r["cpu_us"] for r in taken)
                say(f"{name:>9} {http:<8} {cpu:6.0f} µs of server CPU per answer")
    return {"facewire_asgi": 1, "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "requests_per_round": requests, "rounds": rounds,
            "versions": {n: _version(n) for n in SERVERS},
            "settings": Settings().model_dump(include={"threads", "max_inflight"}),
            "rows": rows}  # fmt: skip


def _answers(url: str) -> bool:
    try:
        with urllib_request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own server)
            return bool(response.status == 200)
    except OSError:
        return False


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def report(document: dict[str, Any]) -> str:
    """asgi.md's table from a run's asgi.json (docs/performance.md quotes one)."""
    base = next(r for r in document["rows"] if r["server"] == "uvicorn")
    base_cpu = statistics.median(r["cpu_us"] for r in base["rounds"])
    lines = ["| server | HTTP | server CPU per echo answer, µs (median; rounds) | "
             "÷ uvicorn's | answers/s (median) |", "|---|---|---|---|---|"]  # fmt: skip
    for row in document["rows"]:
        cpus = [r["cpu_us"] for r in row["rounds"]]
        cpu = statistics.median(cpus)
        rate = statistics.median(r["answers_per_s"] for r in row["rounds"])
        version = document["versions"][row["server"]]
        lines.append(f"| {row['server']} {version} | {row['http']} | {cpu:.0f} "
                     f"({', '.join(str(c) for c in cpus)}) | {cpu / base_cpu:.2f} | "
                     f"{rate:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.bench.asgi", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=ROUND_REQUESTS, help="per round")
    parser.add_argument("--out", type=Path, help="default asgi-results/<UTC time>")
    args = parser.parse_args(argv)
    if args.requests > ROUND_REQUESTS:
        parser.error(f"--requests at most {ROUND_REQUESTS}: one connection per round")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("asgi-results") / stamp
    out.mkdir(parents=True, exist_ok=True)
    document = run(out.resolve() / "work", args.rounds, args.requests)
    (out / "asgi.json").write_text(json.dumps(document, indent=1) + "\n")
    (out / "asgi.md").write_text(report(document))
    print(report(document))
    print(f"results in {out}/ (asgi.json, asgi.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
