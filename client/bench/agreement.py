"""Whether every protocol gives the same answer: one frame through each, before the
benchmark times them (a protocol that answers wrongly fast would win otherwise)."""

from __future__ import annotations

from collections.abc import Sequence

from client.transports import ProtocolName, TransportError, make_transport
from facewire.messages import Box

#: The model whose answer is compared: the one with boxes to compare.
MODEL = "haar"


class DisagreementError(RuntimeError):
    """Protocols gave different boxes for one frame, or one gave none."""


def check(protocols: Sequence[ProtocolName], frame: bytes, rest_url: str,
          grpc_target: str) -> str:  # fmt: skip
    """A line saying the protocols that answered agree (and which did not answer: the
    benchmark counts their errors); ``DisagreementError`` when the boxes differ."""
    boxes: dict[str, tuple[Box, ...]] = {}
    silent: dict[str, str] = {}
    for protocol in protocols:
        transport = make_transport(protocol, rest_url, grpc_target)
        try:
            reply = transport.detect(frame, model=MODEL, save=False, frame_id="agreement")
            boxes[protocol] = reply.result.boxes
        except TransportError as error:
            silent[protocol] = str(error)
        finally:
            transport.close()
    if len(set(boxes.values())) > 1:
        shown = "; ".join(f"{p}: {[(b.x, b.y, b.width, b.height) for b in found]}"
                          for p, found in boxes.items())  # fmt: skip
        raise DisagreementError(f"the protocols gave different boxes for one frame: {shown}")
    line = ""
    if boxes:
        count = len(next(iter(boxes.values())))
        line = (f"agreement: {', '.join(boxes)} gave the same {count} box(es) for the first "
                f"frame ({MODEL})")  # fmt: skip
    for name, why in silent.items():
        line += f"{'; ' if line else ''}agreement: {name} did not answer ({why})"
    return line
