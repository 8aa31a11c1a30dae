"""What each payload form costs to create and parse, apart from the network: the request
built by the client and read by the server, and the answer built by the server and read
by the client, with the codecs both sides run (``facewire.wire``), timed in this process.

Not in here, because they are the frameworks' and not a codec's: FastAPI reading a raw
body or parsing a multipart form (Starlette's parser), and grpc's own framing. Those are
in the end-to-end latencies that ``experiments.payload_forms`` takes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from facewire import inference
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.oip.v2 import grpc_predict_v2_pb2 as v2_pb
from facewire.v1 import face_detection_pb2 as v1_pb
from facewire.wire import v1_json, v1_proto, v2_json, v2_proto

Step = Callable[[], object]
#: The four steps of one request, in order: client encode, server decode, server
#: encode, client decode. None: the form has no codec for that step.
Steps = tuple[Step | None, Step | None, Step | None, Step | None]
STEP_NAMES = ("client encode", "server decode", "server encode", "client decode")


def _median_us(step: Step, repeat: int) -> float:
    step()  # first call: imports, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        step()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def _v1_rest(request: DetectionRequest, result: DetectionResult) -> Steps:
    answer = v1_json.result_to_json(result).model_dump_json().encode()
    return (
        None,  # the JPEG is the body
        None,
        lambda: v1_json.result_to_json(result).model_dump_json().encode(),
        lambda: v1_json.json_to_result(v1_json.DetectResponse.model_validate_json(answer)),
    )


def _v1_grpc(request: DetectionRequest, result: DetectionResult) -> Steps:
    sent = v1_proto.request_to_pb(request).SerializeToString()
    answer = v1_proto.result_to_pb(result, "grpc").SerializeToString()
    return (
        lambda: v1_proto.request_to_pb(request).SerializeToString(),
        lambda: v1_proto.request_to_core(v1_pb.DetectRequest.FromString(sent), "grpc"),
        lambda: v1_proto.result_to_pb(result, "grpc").SerializeToString(),
        lambda: v1_proto.result_to_core(v1_pb.DetectResponse.FromString(answer)),
    )


def _v2_http(binary: bool) -> Callable[[DetectionRequest, DetectionResult], Steps]:
    def steps(request: DetectionRequest, result: DetectionResult) -> Steps:
        body, length = v2_json.encode_request(request, binary=binary)
        header = str(length) if binary else None
        asked = v2_json.decode_request(body, header)

        name = inference.MODEL_NAMES[request.model]

        def server_encode() -> tuple[bytes, int | None]:
            tensors = inference.to_outputs(result, asked.outputs)
            return v2_json.encode_response(name, asked.id, tensors, asked.binary,
                                           inference.response_parameters(result))  # fmt: skip

        answer, answer_length = server_encode()

        def client_decode() -> DetectionResult:
            values, parameters = v2_json.decode_response(answer, answer_length)
            return inference.from_outputs(values, request.model, request.frame_id, parameters)

        def server_decode() -> DetectionRequest:
            decoded = v2_json.decode_request(body, header)
            return inference.to_request(
                request.model, decoded.inputs, frame_id=decoded.id or "", protocol="rest"
            )

        return (lambda: v2_json.encode_request(request, binary=binary), server_decode,
                server_encode, client_decode)  # fmt: skip

    return steps


def _v2_grpc(request: DetectionRequest, result: DetectionResult) -> Steps:
    message = v2_proto.request_to_pb(request)
    sent = message.SerializeToString()
    name = inference.MODEL_NAMES[request.model]
    answer = v2_proto.result_to_response(name, message, result).SerializeToString()

    def server_decode() -> DetectionRequest:
        inputs = v2_proto.request_to_inputs(v2_pb.ModelInferRequest.FromString(sent))
        return inference.to_request(request.model, inputs, frame_id=message.id, protocol="grpc")

    return (
        lambda: v2_proto.request_to_pb(request).SerializeToString(),
        server_decode,
        lambda: v2_proto.result_to_response(name, message, result).SerializeToString(),
        lambda: v2_proto.response_to_result(v2_pb.ModelInferResponse.FromString(answer),
                                            request.model),
    )  # fmt: skip


FORMS: dict[str, Callable[[DetectionRequest, DetectionResult], Steps]] = {
    "rest": _v1_rest,
    "rest-v2": _v2_http(binary=True),
    "rest-v2-json": _v2_http(binary=False),
    "grpc": _v1_grpc,
    "grpc-v2": _v2_grpc,
}


def measure(image: bytes, result: DetectionResult, repeat: int) -> dict[str, dict[str, float]]:
    """Per form: the median µs of each step (absent: no codec), and their sum."""
    request = DetectionRequest(image, Model.HAAR, False, "frame-1")
    out: dict[str, dict[str, float]] = {}
    for form, make in FORMS.items():
        timed = {name: round(_median_us(step, repeat), 1)
                 for name, step in zip(STEP_NAMES, make(request, result), strict=True)
                 if step is not None}  # fmt: skip
        out[form] = {**timed, "total": round(sum(timed.values()), 1)}
    return out
