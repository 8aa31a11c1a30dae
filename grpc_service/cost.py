"""``python -m grpc_service.cost``: what admitting a unary call's upload costs (``make
perf``'s "P4 budget"), in microseconds of CPU per call, printed as JSON.

The same behaviour with and without grpc_service.admission around it, on one event
loop, with a stand-in for grpc's servicer context whose ``read`` answers at once with a
face frame's request: the difference is the admission's own work (peer lookup, the
budget's reservation and give-back, the arrival deadline's timer), without grpc's or the
machine's noise around it. The end-to-end cost is in P4.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from grpc_service.admission import Admission

FRAME_BYTES = 55_000  # a 1280×720 JPEG's size; its content is never looked at
CALLS = 20_000
ROUNDS = 5


class StandInContext:
    def __init__(self, message: pb.DetectRequest) -> None:
        self.message = message

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    async def read(self) -> pb.DetectRequest:
        return self.message


async def _answer(request: Any, context: Any) -> None:
    return None


async def _plain(requests: Any, context: Any) -> None:
    return await _answer(await context.read(), context)


async def _per_call_us(behaviour: Any, context: StandInContext, calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        await behaviour(None, context)
    return 1e6 * (time.thread_time() - start) / calls


async def measure(calls: int = CALLS, rounds: int = ROUNDS) -> dict[str, float]:
    admission = Admission.from_settings(Settings())
    admitted = admission.unary(_answer)
    context = StandInContext(pb.DetectRequest(image=bytes(FRAME_BYTES)))
    await _per_call_us(admitted, context, calls // 10)  # warm both
    await _per_call_us(_plain, context, calls // 10)
    costs = []
    for _ in range(rounds):
        with_admission = await _per_call_us(admitted, context, calls)
        without = await _per_call_us(_plain, context, calls)
        costs.append(with_admission - without)
    return {"admission_us": statistics.median(costs), "spread_us": max(costs) - min(costs)}


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else CALLS
    print(json.dumps(asyncio.run(measure(calls))))


if __name__ == "__main__":
    main()
