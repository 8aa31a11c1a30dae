"""A memory budget for uploads in flight, over all connections of one service process.

Each transport holds an upload whole before the pipeline sees it, and the in-flight cap
counts requests, not bytes: 32 uploads of 8 MiB at once held 250 MiB (REST) and 620 MiB
(gRPC, which holds a message in several copies). A request reserves what it may hold
before its body or message is read, keeps the real size once it has arrived, and gives
it back when it ends. Both services use this one mechanism (rest_service.body,
grpc_service.admission).

Three rules keep large or slow uploads from starving small ones:

- **Large uploads share part of the budget.** A reservation over an eighth of the
  budget is *large*; large ones together hold at most three quarters of it, so the
  rest always has room for ordinary frames (tens to hundreds of KB).
- **Few wait.** At most ``max_waiting`` requests wait for room, each at most
  ``wait_s``; beyond either, ``BudgetSpent`` (503 / RESOURCE_EXHAUSTED) with the upload
  unread. A waiting gRPC call holds its stream window unread, so this bounds that too.
- **One upload is always let in** when nothing is held, however large, so that the
  budget can never refuse them all.

How long an admitted upload may take to arrive is each transport's deadline
(``body_timeout_s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from facewire.errors import Overloaded
from facewire.settings import MiB

#: A reservation over this share of the budget is large.
LARGE_FRACTION = 1 / 8
#: Large reservations together hold at most this share of the budget.
LARGE_SHARE = 3 / 4


class BudgetSpent(Overloaded):
    """No room in the upload budget: retry shortly (503 / RESOURCE_EXHAUSTED)."""


class UploadBudget:
    """Bytes reserved for uploads, on the service's event loop (so no lock)."""

    def __init__(self, budget: int, wait_s: float, max_waiting: int = 16) -> None:
        self.budget = budget
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self.large_bytes = int(budget * LARGE_FRACTION)
        self.large_room = int(budget * LARGE_SHARE)
        self.reserved = 0
        self.reserved_large = 0
        self._waiters: list[asyncio.Future[None]] = []

    def fits(self, size: int) -> bool:
        if self.reserved == 0:
            return True
        if self.reserved + size > self.budget:
            return False
        return size <= self.large_bytes or self.reserved_large + size <= self.large_room

    async def reserve(self, size: int, wait_s: float | None = -1.0) -> Lease:
        """A lease of ``size`` bytes, waiting up to ``wait_s`` (the budget's own wait by
        default; None: as long as it takes) for room; BudgetSpent after that, or at once
        when ``max_waiting`` requests already wait."""
        if self.fits(size):  # no timer when it fits
            return Lease(self, size)
        if len(self._waiters) >= self.max_waiting:
            raise BudgetSpent(self.refusal())
        wait = self.wait_s if wait_s is not None and wait_s < 0 else wait_s
        if not await self._wait_until(lambda: self.fits(size), wait):
            raise BudgetSpent(self.refusal())
        return Lease(self, size)

    async def room(self) -> None:
        """Return once less than the whole budget is held (a stream's next read)."""
        await self._wait_until(lambda: self.reserved < self.budget, None)

    def hold(self, size: int) -> Lease:
        """A lease for an upload already received, of its size."""
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

    def _take(self, size: int) -> None:
        self.reserved += size
        if size > self.large_bytes:
            self.reserved_large += size

    def _give_back(self, size: int) -> None:
        self.reserved -= size
        if size > self.large_bytes:
            self.reserved_large -= size
        if size > 0:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)


class Lease:
    """One request's share of the budget; resized once its upload's real size is known,
    given back once, when the request ends."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: UploadBudget, size: int) -> None:
        budget._take(size)
        self.budget = budget
        self.size = size

    def resize(self, size: int) -> None:
        if size != self.size:
            self.budget._take(size)
            self.budget._give_back(self.size)
            self.size = size

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget._give_back(size)
