"""The upload budget's rules (facewire.budget), on an event loop of their own: large
uploads hold at most their share, few wait, and a lease's real size decides its class."""

from __future__ import annotations

import asyncio

import pytest

from facewire.budget import BudgetSpent, UploadBudget
from facewire.settings import MiB

pytestmark = pytest.mark.unit


def test_large_uploads_leave_room_for_ordinary_frames() -> None:
    async def scenario() -> None:
        budget = UploadBudget(24 * MiB, wait_s=0.0)
        leases = [await budget.reserve(8 * MiB), await budget.reserve(8 * MiB)]
        with pytest.raises(BudgetSpent):  # a third would pass three quarters of 24 MiB
            await budget.reserve(8 * MiB)
        frame = await budget.reserve(55_000)  # a frame still fits, at once (no wait)
        assert budget.reserved == 16 * MiB + 55_000
        for lease in [*leases, frame]:
            lease.release()
        assert budget.reserved == budget.reserved_large == 0

    asyncio.run(scenario())


def test_one_upload_is_always_let_in() -> None:
    async def scenario() -> None:
        budget = UploadBudget(4 * MiB, wait_s=0.0)
        lease = await budget.reserve(9 * MiB)  # over the whole budget, but nothing is held
        assert budget.reserved == 9 * MiB
        lease.release()

    asyncio.run(scenario())


def test_beyond_max_waiting_a_request_is_refused_at_once() -> None:
    async def scenario() -> None:
        budget = UploadBudget(10 * MiB, wait_s=3600.0, max_waiting=2)
        held = await budget.reserve(10 * MiB)
        waiting = [asyncio.create_task(budget.reserve(MiB)) for _ in range(2)]
        await asyncio.sleep(0)  # one turn of the loop: both tasks run to their wait
        assert len(budget._waiters) == 2
        with pytest.raises(BudgetSpent):  # refused, not left waiting the hour
            await asyncio.wait_for(budget.reserve(MiB), timeout=60)
        held.release()
        for lease in await asyncio.gather(*waiting):  # the two waiting ones get in
            lease.release()
        assert budget.reserved == 0

    asyncio.run(scenario())


def test_a_lease_resized_to_its_real_size_changes_class() -> None:
    async def scenario() -> None:
        budget = UploadBudget(24 * MiB, wait_s=0.0)
        lease = await budget.reserve(8 * MiB)  # an unknown gRPC message: large
        assert budget.reserved_large == 8 * MiB
        lease.resize(60_000)  # it was a frame
        assert (budget.reserved, budget.reserved_large) == (60_000, 0)
        lease.release()
        lease.release()  # given back once
        assert budget.reserved == 0

    asyncio.run(scenario())
