"""h2load (nghttp2's load generator, C) beside the Python one: REST over HTTP/1.1 and
unary gRPC over HTTP/2 (h2c), the same frames, windows the runner treats like any other.

- REST: ``POST /v1/detect?model=...`` with the frame as the body, ``--h1``.
- gRPC: ``POST /facewire.v1.FaceDetection/Detect`` with a prepared length-prefixed
  ``DetectRequest`` (gRPC's 5-byte frame header, then the message), ``content-type:
  application/grpc`` and ``te: trailers``.

h2load counts every HTTP 200 as a success, but a failed gRPC call is an HTTP 200 too,
with a non-zero ``grpc-status`` trailer. So success is checked independently: the
services' own Prometheus counters (``facewire_requests_total`` by protocol, model and
status) are read before and after every window, and any request they did not count as
``ok`` is an error of the window, whatever h2load says. A window's latency comes from
h2load's per-request log (``--log-file``), into the same HdrHistograms as the Python
generator's; its CPU is h2load's own (the children's rusage around it).

One frame per window (h2load posts one body): window k sends frame k, so a point's
windows go through the frames in turn, as the Python generator's requests do.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from client.bench.load import WindowResult, WindowSpec, new_histogram
from facewire.messages import Model
from facewire.v1 import face_detection_pb2 as pb

#: What h2load can drive here: REST (HTTP/1.1) and unary gRPC; not streams.
SUPPORTED = ("rest", "grpc")
METHOD = "/facewire.v1.FaceDetection/Detect"
#: h2load's summary line: "finished in 2.00s, 1234.50 req/s, ..."
FINISHED = re.compile(r"finished in ([\d.]+)(ms|s),")


class H2loadError(RuntimeError):
    """h2load is missing, failed, or the services' counters cannot be read."""


def grpc_body(image: bytes, model: str) -> bytes:
    """A unary gRPC request body: not compressed (0), the length (big-endian), the message."""
    message = pb.DetectRequest(image=image, model=model).SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def counted(metrics_url: str, protocol: str, model: str) -> Counter[str]:
    """``facewire_requests_total`` for one protocol and model (its label: an unknown
    model is counted as "invalid"), by status."""
    model = Model.label(model)
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as answer:  # noqa: S310 (ours)
            text = answer.read().decode()
    except OSError as error:
        raise H2loadError(f"cannot read the service's metrics at {metrics_url}: {error}") from None
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "facewire_requests":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_total")
                and labels.get("protocol") == protocol
                and labels.get("model") == model
            ):
                found[labels["status"]] += int(sample.value)
    return found


class H2loadGenerator:
    """Windows of h2load, with the same interface as ``LoadPool`` (``run``, ``close``)."""

    size = 1

    def __init__(
        self,
        frames: list[bytes],
        rest_url: str,
        grpc_target: str,
        rest_metrics_url: str,
        grpc_metrics_url: str,
    ) -> None:
        if shutil.which("h2load") is None:
            raise H2loadError("no h2load (Debian: apt-get install nghttp2-client)")
        self.frames = frames
        self.rest_url = rest_url.rstrip("/")
        self.grpc_url = f"http://{grpc_target}"
        self.metrics = {"rest": rest_metrics_url, "grpc": grpc_metrics_url}
        self._dir = tempfile.TemporaryDirectory(prefix="facewire-h2load-")
        self.folder = Path(self._dir.name)
        #: The last window's HTTP statuses as h2load saw them (what it calls success).
        self.last_statuses: Counter[str] = Counter()

    def command(self, spec: WindowSpec, body: Path, log: Path) -> list[str]:
        """The h2load command for one window."""
        if spec.protocol not in SUPPORTED or spec.concurrency is None:
            raise H2loadError(f"h2load drives closed-loop {' and '.join(SUPPORTED)} only")
        common = ["h2load", "--clients", str(spec.concurrency), "--max-concurrent-streams", "1",
                  "--data", str(body), f"--log-file={log}"]  # fmt: skip
        if spec.requests is not None:
            common += ["--requests", str(spec.requests)]
        else:
            assert spec.duration_s is not None
            # No warm-up of its own: the runner warms every series up with a window first.
            common += ["--duration", f"{round(spec.duration_s * 1000)}ms"]
        if spec.protocol == "rest":
            url = f"{self.rest_url}/v1/detect?model={spec.model}&save=false"
            return [*common, "--h1", "--header", "content-type: image/jpeg", url]
        return [*common, "--header", "content-type: application/grpc",
                "--header", "te: trailers", f"{self.grpc_url}{METHOD}"]  # fmt: skip

    def run(self, spec: WindowSpec) -> WindowResult:
        frame = self.frames[(spec.first_frame // 100_000) % len(self.frames)]
        body = self.folder / f"body-{spec.protocol}-{spec.model}.bin"
        body.write_bytes(grpc_body(frame, spec.model) if spec.protocol == "grpc" else frame)
        log = self.folder / "requests.log"
        log.unlink(missing_ok=True)
        command = self.command(spec, body, log)
        metrics = self.metrics[spec.protocol]
        before = counted(metrics, spec.protocol, spec.model)
        cpu_before = _children_cpu()
        started = time.perf_counter()
        # Fixed program; arguments are our own numbers, paths and the services' URLs.
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        elapsed = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        if done.returncode != 0:
            raise H2loadError(f"h2load failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        after = counted(metrics, spec.protocol, spec.model)
        return self._result(
            spec, log, done.stdout, elapsed, cpu, after - before, len(body.read_bytes())
        )

    def _result(
        self, spec: WindowSpec, log: Path, output: str, elapsed: float, cpu: float,
        served: Counter[str], body_bytes: int,
    ) -> WindowResult:  # fmt: skip
        latency = new_histogram()
        succeeded, statuses = 0, Counter[str]()
        started_us: list[int] = []
        for line in log.read_text().splitlines():
            start_us, code, duration_us = (int(field) for field in line.split("\t")[:3])
            started_us.append(start_us)
            statuses[str(code)] += 1
            if 200 <= code < 300:
                succeeded += 1
                latency.record_value(max(1, duration_us))
        self.last_statuses = statuses
        result = WindowResult(f"{spec.protocol} (h2load)", elapsed, cpu_s=cpu)
        # The window's length as h2load measured it (not its start-up).
        finished = FINISHED.search(output)
        if finished is not None:
            scale = 1e-3 if finished.group(2) == "ms" else 1.0
            result.elapsed_s = max(1e-3, float(finished.group(1)) * scale)
        result.completed = min(succeeded, served["ok"])
        if len(started_us) > result.completed:
            # Named by the service when it counted them (for gRPC, the calls that ended
            # with a grpc-status other than OK inside an HTTP 200, which h2load calls a
            # success), else by their HTTP status.
            # (A request h2load itself cut at the window's end is "client_gone" to the
            # service: h2load's doing, and not in its log, so not an error here.)
            kinds = {
                f"service: {s}": n for s, n in served.items() if s not in ("ok", "client_gone")
            } or {f"HTTP {c}": n for c, n in statuses.items() if not c.startswith("2")}
            result.errors.update(kinds or {"not counted by the service": succeeded - served["ok"]})
        result.bytes_sent = body_bytes * len(started_us)
        result.latency = result.service = bytes(latency.encode())
        result.overhead = bytes(new_histogram().encode())
        if "requests:" not in output:
            raise H2loadError(f"h2load printed no summary: {output[-500:]}")
        return result

    def close(self) -> None:
        self._dir.cleanup()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
