"""Converters come in pairs; each pair round-trips any core value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from facewire.messages import Box, Crop, DetectionRequest, DetectionResult, Model, Size, Timings
from grpc_service.converters import request_to_core, request_to_pb, result_to_core, result_to_pb
from rest_service.schemas import DetectResponse, to_core, to_json, to_json_bytes

ints = st.integers(min_value=0, max_value=100_000)
ms = st.floats(min_value=0, max_value=1e6, allow_nan=False, width=64)
text = st.text(max_size=40)

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


@given(results)
def test_protobuf_result_round_trip(result: DetectionResult) -> None:
    assert result_to_core(result_to_pb(result, "grpc")) == result


@given(results)
def test_json_bytes_are_the_models_json(result: DetectionResult) -> None:
    assert to_json_bytes(result) == to_json(result).model_dump_json().encode()


@given(results)
def test_json_result_round_trip(result: DetectionResult) -> None:
    wire = to_json(result).model_dump_json()
    assert to_core(DetectResponse.model_validate_json(wire)) == result


@given(
    st.builds(
        DetectionRequest,
        image=st.binary(max_size=64),
        model=st.sampled_from(Model),
        save=st.booleans(),
        frame_id=text,
        protocol=st.just("grpc"),
    )
)
def test_protobuf_request_round_trip(request: DetectionRequest) -> None:
    assert request_to_core(request_to_pb(request), "grpc") == request
