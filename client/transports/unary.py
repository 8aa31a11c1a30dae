"""Unary gRPC calls: facewire's ``Detect`` and the Open Inference Protocol's
``ModelInfer``, one channel each."""

from __future__ import annotations

import time

import grpc
from google.protobuf.message import DecodeError

from client.transports.base import ProtocolName, Reply, TransportError, core_request
from client.transports.channel import GrpcChannel, detect_request, grpc_error, parse_answer, reply
from facewire.oip.v2 import grpc_predict_v2_pb2 as oip_pb
from facewire.wire import v2_proto

_DETECT = "/facewire.v1.FaceDetection/Detect"
_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class GrpcTransport(GrpcChannel):
    """Unary ``Detect`` calls on one channel."""

    name: ProtocolName = "grpc"

    def _bind(self) -> None:
        self._detect: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            _DETECT
        )

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        self._fresh_channel()
        request = detect_request(image, model, save, frame_id)
        try:
            raw = self._detect(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise grpc_error(error) from None
        received = time.perf_counter_ns()
        answer = reply(request, raw, parse_answer(raw), start, received)
        self._done_with_channel()
        return answer


class GrpcV2Transport(GrpcChannel):
    """Unary ``inference.GRPCInferenceService/ModelInfer`` calls, IMAGE in
    ``raw_input_contents`` (``facewire.wire.v2_proto``)."""

    name: ProtocolName = "grpc-v2"

    def _bind(self) -> None:
        self._infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            _MODEL_INFER
        )

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        core = core_request(image, model, save, frame_id)
        self._fresh_channel()
        request = v2_proto.request_to_pb(core).SerializeToString()
        try:
            raw = self._infer(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise grpc_error(error) from None
        received = time.perf_counter_ns()
        try:
            answer = oip_pb.ModelInferResponse.FromString(raw)
            result = v2_proto.response_to_result(answer, core.model)
        except (DecodeError, ValueError, KeyError):
            raise TransportError("protocol", "the reply is not an inference answer") from None
        end = time.perf_counter_ns()
        self._done_with_channel()
        return Reply(result, (end - start) / 1e6, len(request), len(raw), (end - received) / 1e6)
