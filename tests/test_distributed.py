"""Load from many machines, on loopback: a real Dask scheduler and two worker processes
(the ``dask`` CLI, as a user starts them on other machines) running facewire's load
processes against real services. The merge of their histograms is exact, a sweep runs
end to end, and a worker lost mid-window is reported, never merged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from dask.distributed import Client

from client.bench import FACE
from client.bench.distributed import DaskPool, WindowIncomplete
from client.bench.load import WindowSpec, decode, merge_encoded, new_histogram
from client.bench.servers import facewire_services
from client.processes import free_port
from tests.servers import ROOT, wait_for

DASK = str(Path(sys.executable).parent / "dask")


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen[bytes]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """``dask scheduler`` and two ``dask worker`` processes (one thread each, no nanny:
    a killed worker stays dead), from the checkout, as on a load machine."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with ExitStack() as stack:

        def start(*argv: str, log: str) -> subprocess.Popen[bytes]:
            out = stack.enter_context(open(tmp_path / log, "wb"))
            process = subprocess.Popen([DASK, *argv], cwd=ROOT, env=env, stdout=out,
                                       stderr=subprocess.STDOUT)  # fmt: skip
            stack.callback(process.wait, 30)
            stack.callback(lambda: process.poll() is None and process.send_signal(signal.SIGTERM))
            return process

        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
              log="scheduler.log")  # fmt: skip
        workers = [
            start(
                "worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                log=f"worker-{i}.log",
            )
            for i in range(2)
        ]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield Cluster(address, workers)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with facewire_services(tmp_path / "services") as (url, target, _, _):
        yield url, target


def histogram_of(values: list[int]) -> bytes:
    """Runs on a worker: values recorded as a load process records them, encoded."""
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    return bytes(histogram.encode())


def test_histograms_recorded_on_two_workers_merge_exactly(cluster: Cluster) -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(7, 1.2)) + 1 for _ in range(20_000)]  # µs, long tail
    halves = [values[::2], values[1::2]]
    with Client(cluster.address) as client:
        workers = sorted(client.scheduler_info()["workers"])
        parts = [client.submit(histogram_of, half, workers=[w], pure=False).result()
                 for half, w in zip(halves, workers, strict=True)]  # fmt: skip
    merged = decode(merge_encoded(*parts))
    alone = decode(histogram_of(values))
    assert merged.get_total_count() == alone.get_total_count() == len(values)
    for percentile in (0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100):
        assert merged.get_value_at_percentile(percentile) == alone.get_value_at_percentile(
            percentile
        ), percentile
    assert merged.get_mean_value() == alone.get_mean_value()
    assert merged.get_min_value() == alone.get_min_value()
    assert merged.get_max_value() == alone.get_max_value()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_window_split_over_two_workers_merges_what_each_measured(
    cluster: Cluster, services: tuple[str, str], protocol: str
) -> None:
    url, target = services
    pool = DaskPool(cluster.address, [FACE.read_bytes()], url, target)
    try:
        assert pool.size == 2
        spec = WindowSpec(protocol=protocol, model="echo", concurrency=2, rate=None,
                          duration_s=None, requests=200)  # type: ignore[arg-type]  # fmt: skip
        merged = pool.run(spec)
        parts = pool.last_parts
    finally:
        pool.close()
    assert [p.completed for p in parts] == [100, 100]  # each worker took its share
    assert merged.completed == 200
    assert not merged.errors
    assert merged.processes == 2
    # The merge is every part's recorded values, added one by one into one histogram.
    by_hand = new_histogram()
    for part in parts:
        for item in decode(part.latency).get_recorded_iterator():
            by_hand.record_value(item.value_iterated_to, item.count_at_value_iterated_to)
    together = decode(merged.latency)
    assert together.get_total_count() == by_hand.get_total_count() == 200
    for percentile in (50, 90, 99, 100):
        assert together.get_value_at_percentile(percentile) == by_hand.get_value_at_percentile(
            percentile
        )


def test_make_bench_on_a_dask_scheduler(cluster: Cluster, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "client.bench", "--start-services", "--scheduler",
            cluster.address, "--protocols", "rest,grpc", "--models", "echo", "--concurrency",
            "2", "--window", "0.5", "--max-windows", "2", "--stable-windows", "2",
            "--warmup", "0.2", "--frames", "4", "--out", str(tmp_path / "out")]  # fmt: skip
    env = {**os.environ, "FACEWIRE_REST_PORT": str(free_port()),
           "FACEWIRE_GRPC_PORT": str(free_port())}  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "out" / "results.json").read_text())
    assert run["config"]["scheduler"] == cluster.address
    assert {p["protocol"] for p in run["points"]} == {"rest", "grpc"}
    assert all(p["error_count"] == 0 for p in run["points"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"workers of the Dask scheduler {cluster.address}" in report


def test_a_worker_lost_mid_window_is_reported_and_not_merged(
    cluster: Cluster, services: tuple[str, str]
) -> None:
    url, target = services
    pool = DaskPool(cluster.address, [FACE.read_bytes()], url, target)
    try:
        spec = WindowSpec(protocol="rest", model="echo", concurrency=2, rate=None,
                          duration_s=4.0)  # fmt: skip
        victim = cluster.workers[0]
        with Client(cluster.address) as watcher:
            # Kill a worker once the window is under way on both.
            def running() -> bool:
                processing = watcher.processing()
                return sum(len(tasks) for tasks in processing.values()) == 2

            def kill_when_running() -> None:
                wait_for(running, timeout=30, what="both workers busy")
                victim.kill()

            killer = threading.Thread(target=kill_when_running)
            killer.start()
            with pytest.raises(WindowIncomplete) as caught:
                pool.run(spec)
            killer.join(30)
    finally:
        pool.close()
    assert len(caught.value.lost) == 1
    assert "incomplete and not merged" in str(caught.value)
    assert len(caught.value.parts) <= 1  # the survivor's part, kept apart
