"""The wire formats' codecs come in pairs; each pair round-trips any core value, and
the server's side reads what the client's side writes (facewire.wire)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facewire import inference
from facewire.errors import InvalidInput
from facewire.messages import Box, Crop, DetectionRequest, DetectionResult, Model, Size, Timings
from facewire.oip.v2 import grpc_predict_v2_pb2 as oip_pb
from facewire.wire import v1_json, v1_proto, v2_json, v2_proto

pytestmark = pytest.mark.unit

ints = st.integers(min_value=0, max_value=100_000)
ms = st.floats(min_value=0, max_value=1e6, allow_nan=False, width=64)
text = st.text(max_size=40)
int32 = st.integers(min_value=0, max_value=2**31 - 1)
#: float32, as the Open Inference Protocol's TIMINGS_MS carries them.
ms32 = st.floats(min_value=0, max_value=1e6, allow_nan=False, width=32)

results = st.builds(
    DetectionResult,
    frame_id=text,
    model=st.sampled_from(Model),
    boxes=st.lists(st.builds(Box, ints, ints, ints, ints), max_size=5).map(tuple),
    frame=st.builds(Size, ints, ints),
    crop=st.builds(Crop, ints, ints, ints),
    image=st.builds(Size, ints, ints),
    timings=st.builds(Timings, ms, ms, ms, ms, ms, ms),
    saved_image=st.none() | text,
)
requests = st.builds(
    DetectionRequest,
    image=st.binary(max_size=64),
    model=st.sampled_from(Model),
    save=st.booleans(),
    frame_id=text,
    protocol=st.just("grpc"),
)


@given(results)
def test_v1_protobuf_result_round_trip(result: DetectionResult) -> None:
    assert v1_proto.result_to_core(v1_proto.result_to_pb(result, "grpc")) == result


@given(requests)
def test_v1_protobuf_request_round_trip(request: DetectionRequest) -> None:
    assert v1_proto.request_to_core(v1_proto.request_to_pb(request), "grpc") == request


@given(results)
def test_v1_json_result_round_trip(result: DetectionResult) -> None:
    wire = v1_json.result_to_json(result).model_dump_json()
    assert v1_json.json_to_result(v1_json.DetectResponse.model_validate_json(wire)) == result


# The Open Inference Protocol carries what its tensors hold: the image's size is not
# among them, the frame is 720×720 whenever something was decoded, and timings are
# float32. These results are the ones it can carry whole.
v2_results = st.builds(
    DetectionResult,
    frame_id=text,
    model=st.sampled_from(Model),
    boxes=st.lists(st.builds(Box, int32, int32, int32, int32), max_size=5).map(tuple),
    frame=st.just(Size(720, 720)),
    crop=st.builds(Crop, int32, int32, st.integers(1, 10_000)),
    image=st.just(Size(0, 0)),
    timings=st.builds(Timings, ms32, ms32, ms32, ms32, ms32, ms),
    saved_image=st.none() | st.text(min_size=1, max_size=40),
)


@given(v2_results)
def test_v2_outputs_round_trip(result: DetectionResult) -> None:
    tensors = inference.to_outputs(result)
    values = {t.name: t.values for t in tensors}
    back = inference.from_outputs(
        values, result.model, result.frame_id, inference.response_parameters(result)
    )
    assert back == result


@given(v2_results, st.booleans())
def test_v2_json_answer_round_trip(result: DetectionResult, binary: bool) -> None:
    tensors = inference.to_outputs(result)
    wishes = dict.fromkeys(inference.OUTPUT_NAMES, binary)
    answer, header_length = v2_json.encode_response(
        "face_detector", result.frame_id, tensors, wishes, inference.response_parameters(result)
    )
    assert (header_length is not None) is binary
    values, parameters = v2_json.decode_response(answer, header_length)
    assert inference.from_outputs(values, result.model, result.frame_id, parameters) == result


@given(requests)
def test_v2_json_request_round_trip(request: DetectionRequest) -> None:
    body, header_length = v2_json.encode_request(request)
    decoded = v2_json.decode_request(body, str(header_length))
    assert decoded.id == request.frame_id
    assert decoded.outputs == []
    assert all(decoded.binary.values())  # facewire's client asks for binary answers
    core = inference.to_request(
        request.model, decoded.inputs, frame_id=decoded.id or "", protocol=request.protocol
    )
    assert core == request


@given(requests)
def test_v2_protobuf_request_round_trip(request: DetectionRequest) -> None:
    message = oip_pb.ModelInferRequest.FromString(
        v2_proto.request_to_pb(request).SerializeToString()
    )
    assert inference.find_model(message.model_name) is request.model
    core = inference.to_request(
        request.model, v2_proto.request_to_inputs(message), frame_id=message.id,
        protocol=request.protocol,
    )  # fmt: skip
    assert core == request


@given(v2_results)
def test_v2_protobuf_answer_round_trip(result: DetectionResult) -> None:
    request = oip_pb.ModelInferRequest(model_name="face_detector", id=result.frame_id)
    wire = v2_proto.result_to_response("face_detector", request, result).SerializeToString()
    answer = oip_pb.ModelInferResponse.FromString(wire)
    assert v2_proto.response_to_result(answer, result.model) == result


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{nope", "the inference request is not valid JSON"),
        (b"[1]", "the inference request must be a JSON object"),
        (b"{}", "the request has no inputs (missing input IMAGE)"),
        (b'{"inputs": "IMAGE"}', "the request has no inputs (missing input IMAGE)"),
        (b'{"inputs": []}', "the request has no inputs (missing input IMAGE)"),
        (b'{"inputs": [3]}', "each input must be a JSON object"),
        (b'{"inputs": [{"datatype": "BYTES", "shape": [1]}]}', "each input needs a name"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": "1"}]}',
         "input IMAGE needs a shape: a list of integers"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1]}]}',
         "input IMAGE has neither data nor binary_data_size"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["%"]}]}',
         "a BYTES element in JSON must be a base64 string"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["AA=="],'
         b' "parameters": 5}]}', "parameters must be a JSON object"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}],'
         b' "outputs": [{"nom": "BOXES"}]}', "each requested output must be an object with a name"),
    ],
)  # fmt: skip
def test_v2_json_refusals_say_what_is_wrong(document: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        v2_json.decode_request(document, None)
    assert message in refused.value.message


def test_v2_binary_framing_is_checked() -> None:
    raw = inference.pack_bytes([b"image"])
    header = (
        b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],'
        b' "parameters": {"binary_data_size": %d}}]}' % len(raw)
    )
    decoded = v2_json.decode_request(header + raw, str(len(header)))
    assert decoded.inputs[0].raw == raw
    for body, length, message in (
        (header + raw[:-1], str(len(header)), "binary_data_size is beyond the body"),
        (header + raw + b"x", str(len(header)), "longer than the inputs' binary_data_size"),
        (header + raw, "99999", "is not a length within the body"),
    ):
        with pytest.raises(InvalidInput, match=message):
            v2_json.decode_request(body, length)


def test_numpy_types_serve_both_directions() -> None:
    tensor = inference.to_outputs(DetectionResult("f", Model.HAAR, boxes=(Box(1, 2, 3, 4),)))[0]
    assert np.frombuffer(tensor.raw(), inference.NUMPY_TYPES["INT32"]).tolist() == [1, 2, 3, 4]


@given(requests)
def test_v2_plain_json_request_round_trip(request: DetectionRequest) -> None:
    """Without the binary extension: the image in base64, inside the JSON."""
    body, _ = v2_json.encode_request(request, binary=False)
    decoded = v2_json.decode_request(body, None)
    assert not any(decoded.binary.values())
    core = inference.to_request(
        request.model, decoded.inputs, frame_id=decoded.id or "", protocol=request.protocol
    )
    assert core == request
