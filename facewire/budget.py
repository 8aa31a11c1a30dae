"""A memory budget for uploads in flight, over all connections of one service process.

Each transport holds an upload whole before the pipeline sees it, and the in-flight cap
counts requests, not bytes: 32 uploads of 8 MiB at once held 250 MiB (REST) and 620 MiB
(gRPC, which holds a message in several copies). A request reserves what it may hold
before its body or message is read, keeps the real size once it has arrived, and gives
it back when it ends. One that finds no room within ``upload_budget_wait_s`` is refused
with its upload unread (``BudgetSpent``): its sender is held by flow control meanwhile.
Both services use this one mechanism (rest_service.body, grpc_service.budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from facewire.errors import Overloaded
from facewire.settings import MiB


class BudgetSpent(Overloaded):
    """No room in the upload budget: retry shortly (503 / RESOURCE_EXHAUSTED)."""


class UploadBudget:
    """Bytes reserved for uploads, on the service's event loop (so no lock)."""

    def __init__(self, budget: int, wait_s: float) -> None:
        self.budget = budget
        self.wait_s = wait_s
        self.reserved = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def reserve(self, size: int, wait_s: float | None = -1.0) -> Lease:
        """A lease of ``size`` bytes, waiting up to ``wait_s`` (the budget's own wait by
        default; None: as long as it takes) for room; BudgetSpent after that. One upload
        is always let in, however large, so that the budget can never refuse them all."""

        def fits() -> bool:
            return self.reserved == 0 or self.reserved + size <= self.budget

        wait = self.wait_s if wait_s is not None and wait_s < 0 else wait_s
        if not fits() and not await self._wait_until(fits, wait):  # no timer when it fits
            raise BudgetSpent(self.refusal())
        self.reserved += size
        return Lease(self, size)

    async def room(self) -> None:
        """Return once less than the whole budget is held (a stream's next read)."""
        await self._wait_until(lambda: self.reserved < self.budget, None)

    def hold(self, size: int) -> Lease:
        """A lease for an upload already received, of its size."""
        self.reserved += size
        return Lease(self, size)

    def refusal(self) -> str:
        return (
            f"server busy: the upload budget ({self.budget / MiB:g} MiB) is in use by "
            f"requests in flight; retry shortly"
        )

    async def _wait_until(self, ready: Callable[[], bool], wait_s: float | None) -> bool:
        """Wait (woken by every give-back) until ``ready()``; False after ``wait_s``.
        Futures rather than an asyncio.Condition: a Condition's wait cancelled by a
        timeout or by the request's own cancellation can fail to re-take its lock."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait_s):
                while not ready():
                    waiter = loop.create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.remove(waiter)
        except TimeoutError:
            return False
        return True

    def _give_back(self, size: int) -> None:
        self.reserved -= size
        if size > 0:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)


class Lease:
    """One request's share of the budget; resized once its upload's real size is known,
    given back once, when the request ends."""

    def __init__(self, budget: UploadBudget, size: int) -> None:
        self.budget = budget
        self.size = size

    def resize(self, size: int) -> None:
        self.budget._give_back(self.size - size)
        self.size = size

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget._give_back(size)
