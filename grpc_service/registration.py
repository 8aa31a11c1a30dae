"""Registers a servicer's methods with requests parsed leniently, for every service.

grpc parses each request with the method's deserializer before our code runs, and a
message that does not parse would end the call (or a whole stream) with UNKNOWN. Here
it becomes a ``Malformed`` value instead, which the servicer answers with a clean
INVALID_ARGUMENT, or with an in-stream error while the stream goes on. Otherwise this
is what the generated ``add_*Servicer_to_server`` does, for unary and bidirectional
methods alike, but that each method's upload is admitted into the service's budget
first (grpc_service.admission: unary methods are served as stream-unary handlers for
that, the same frames on the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from grpc_service.admission import Admission


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes that did not parse as the method's request message."""

    kind: str  # the message's full name, e.g. facewire.v1.DetectRequest

    @property
    def reason(self) -> str:
        return f"the message is not a valid {self.kind}"


def lenient(kind: type[Message]) -> Callable[[bytes], Message | Malformed]:
    def parse(raw: bytes) -> Message | Malformed:
        try:
            return kind.FromString(raw)
        except DecodeError:
            return Malformed(kind.DESCRIPTOR.full_name)

    return parse


def register(server: grpc.aio.Server, service: ServiceDescriptor, messages: ModuleType,
             servicer: Any, admission: Admission) -> None:  # fmt: skip
    """Every method of ``service`` (from the generated module ``messages``), served by
    the servicer's method of the same name, its uploads admitted by ``admission``."""
    handlers = {}
    for method in service.methods:
        if method.client_streaming != method.server_streaming:
            raise ValueError(f"{method.full_name}: only unary and bidirectional methods")
        behaviour = getattr(servicer, method.name)
        if method.client_streaming:
            make, behaviour = grpc.stream_stream_rpc_method_handler, admission.stream(behaviour)
        else:
            make, behaviour = grpc.stream_unary_rpc_method_handler, admission.unary(behaviour)
        handlers[method.name] = make(
            behaviour,
            request_deserializer=lenient(getattr(messages, method.input_type.name)),
            response_serializer=getattr(messages, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)  # as generated code does
