"""A short comparison with no window: N frames per protocol, one after another."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from client.engine import encode_frame
from client.sources import FrameSource
from client.stats import ProtocolStats, Summary
from client.transports import ProtocolName, Transport, TransportError

log = logging.getLogger("facewire.client")


def compare(
    source: FrameSource,
    connect: Callable[[ProtocolName], Transport],
    protocols: Sequence[ProtocolName],
    *,
    frames: int,
    model: str,
    jpeg_quality: int,
) -> list[Summary]:
    """Every protocol gets the same encoded frames, in the same order."""
    encoded = [encode_frame(i, source.read(), jpeg_quality) for i in range(frames)]
    summaries = []
    for protocol in protocols:
        stats = ProtocolStats(protocol)
        stats.activate()
        transport = connect(protocol)
        try:
            for frame in encoded:
                try:
                    reply = transport.detect(
                        frame.jpeg, model=model, save=False, frame_id=str(frame.seq)
                    )
                except TransportError as error:
                    stats.record_error(error.kind, error.message)
                    continue
                stats.record(
                    reply.latency_ms,
                    reply.result.timings.in_server,
                    reply.bytes_sent,
                    reply.bytes_received,
                )
        finally:
            transport.close()
        stats.deactivate()
        summary = stats.summary()
        log.info("%s: %d answers, %d errors", protocol, summary.count, summary.errors)
        summaries.append(summary)
    return summaries
