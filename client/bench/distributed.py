"""Load from many machines: facewire's own load processes, placed and coordinated by
Dask distributed (``make bench ARGS="--scheduler tcp://HOST:8786"``).

Each Dask worker runs the same ``LoadProcess`` as a local load process (its transports
kept between windows, one per worker process), so schedules, open loops and
coordinated-omission correction are unchanged: every latency is still measured from
its own intended send time, on the machine that sent it. A window is split between the
workers as between local processes (``split_window``); their encoded HdrHistograms
come back and are added bucket by bucket, which is exact, whatever machine recorded
them. The coordinator judges stability on the merged windows, as it does locally.

A worker lost mid-window is never merged away: the window is reported as incomplete
(which worker, what the others measured) and the run stops there.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any

from dask.distributed import Client, Future, wait

from client.bench.load import LoadProcess, WindowResult, WindowSpec
from client.bench.runner import split_window

#: Polls of the scheduler while a window runs: how soon a lost worker is noticed.
POLL_S = 0.5
#: A window's own length plus this, before its parts count as lost.
GRACE_S = 120.0

#: On each worker: its LoadProcess, kept between windows (transports stay connected).
_PROCESSES: dict[tuple[str, str, bool], LoadProcess] = {}


def run_share(spec: WindowSpec, frames: list[bytes], rest_url: str, grpc_target: str,
              new_connection: bool) -> WindowResult:  # fmt: skip
    """Runs on a Dask worker: this worker's share of one window."""
    key = (rest_url, grpc_target, new_connection)
    if key not in _PROCESSES:
        _PROCESSES[key] = LoadProcess(frames, rest_url, grpc_target, new_connection)
    return _PROCESSES[key].run(spec)


def close_processes() -> int:
    """Runs on each worker at the end: closes its transports."""
    for process in _PROCESSES.values():
        process.close()
    count = len(_PROCESSES)
    _PROCESSES.clear()
    return count


class WindowIncomplete(RuntimeError):
    """A worker was lost during a window: what the others measured is kept apart."""

    def __init__(self, lost: list[str], parts: list[WindowResult]) -> None:
        super().__init__(
            f"worker {', '.join(lost)} was lost mid-window: the window is incomplete and "
            f"not merged ({len(parts)} other part(s) kept); the run stops here"
        )
        self.lost = lost
        self.parts = parts


class DaskPool:
    """The workers of a Dask scheduler as load processes (a ``Generator``)."""

    def __init__(self, scheduler: str, frames: list[bytes], rest_url: str, grpc_target: str,
                 new_connection: bool = False) -> None:  # fmt: skip
        self.client = Client(scheduler, timeout=30)
        self.workers = sorted(self.client.scheduler_info()["workers"])
        if not self.workers:
            self.client.close()
            raise RuntimeError(f"the Dask scheduler {scheduler} has no workers")
        self.size = len(self.workers)
        # Sent once to every worker; each window refers to them.
        self._frames = self.client.scatter(frames, broadcast=True, hash=False)
        self._args = (rest_url, grpc_target, new_connection)
        self.last_parts: list[WindowResult] = []

    def run(self, spec: WindowSpec) -> WindowResult:
        shares = split_window(spec, self.size)
        futures: dict[str, Future[Any]] = {
            worker: self.client.submit(
                run_share,
                share,
                self._frames,
                *self._args,
                workers=[worker],
                allow_other_workers=False,
                pure=False,
                retries=0,
            )
            for worker, share in zip(self.workers, shares, strict=True)
            if share is not None
        }
        deadline = time.monotonic() + (spec.duration_s or 60.0) + GRACE_S
        while True:
            with contextlib.suppress(TimeoutError):  # dask's wait raises when time is up
                wait(list(futures.values()), timeout=POLL_S)
            pending = [f for f in futures.values() if not f.done()]
            alive = set(self.client.scheduler_info()["workers"])
            # A part on a lost worker may show as pending, or as done but cancelled.
            lost = [w for w, f in futures.items() if w not in alive and f.status != "finished"]
            failed = [w for w, f in futures.items() if f.done() and f.status != "finished"]
            if lost or failed or (pending and time.monotonic() > deadline):
                parts = [f.result() for f in futures.values() if f.status == "finished"]
                for future in pending:
                    future.cancel()
                raise WindowIncomplete(lost or failed or sorted(futures), parts)
            if not pending:
                break
        self.last_parts = [futures[w].result() for w in futures]
        merged = copy.deepcopy(self.last_parts[0])
        for part in self.last_parts[1:]:
            merged.merge(part)
        return merged

    def close(self) -> None:
        # A worker already gone has nothing of ours left to close (and would be waited for).
        alive = set(self.client.scheduler_info()["workers"])
        with contextlib.suppress(Exception):
            self.client.run(close_processes, workers=[w for w in self.workers if w in alive])
        self.client.close()
