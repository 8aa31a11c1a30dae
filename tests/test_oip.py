"""The Open Inference Protocol (v2) on both services, with our own generated stubs and
plain HTTP: every endpoint, both data forms, and the error cases. The third-party
client (tritonclient) has its own tests in test_tritonclient.py."""

from __future__ import annotations

import base64
import json
import struct
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from facewire.oip.v2 import grpc_predict_v2_pb2 as pb
from facewire.oip.v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from facewire.settings import MiB, Settings
from tests.conftest import Fixture


@pytest.fixture(scope="module")
def v1_boxes(rest_url: str, face: Fixture) -> list[list[int]]:
    """The reference: what facewire's own /v1/detect finds in the face fixture."""
    reply = httpx.post(f"{rest_url}/v1/detect", content=face.data, timeout=30).json()
    boxes = [[b["x"], b["y"], b["width"], b["height"]] for b in reply["boxes"]]
    assert len(boxes) == 1
    return boxes


@pytest.fixture
def v2(channel: grpc.Channel) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel)


def json_infer(image: bytes, **extra: object) -> dict[str, object]:
    image_input = {"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                   "data": [base64.b64encode(image).decode()]}  # fmt: skip
    return {"inputs": [image_input], **extra}


def binary_infer(image: bytes, *, binary_outputs: bool) -> tuple[bytes, dict[str, str]]:
    element = struct.pack("<I", len(image)) + image
    header = json.dumps(
        {
            "id": "frame-7",
            "inputs": [
                {
                    "name": "IMAGE",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(element)},
                }
            ],
            "outputs": [
                {"name": "BOXES", "parameters": {"binary_data": binary_outputs}},
                {"name": "CROP"},
            ],
        }
    ).encode()
    return header + element, {"Inference-Header-Content-Length": str(len(header))}


# --- REST --------------------------------------------------------------------------


def test_rest_server_and_model_metadata(http: httpx.Client) -> None:
    meta = http.get("/v2").json()
    assert meta["name"] == "facewire"
    assert "binary_tensor_data" in meta["extensions"]
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    for base in ("/v2/models/face_detector", "/v2/models/face_detector/versions/1"):
        assert http.get(f"{base}/ready").status_code == 200
        model = http.get(base).json()
        assert model["versions"] == ["1"]
        assert [(t["name"], t["datatype"], t["shape"]) for t in model["inputs"]] == [
            ("IMAGE", "BYTES", [1]),
            ("SAVE", "BOOL", [1]),
        ]
        assert [(t["name"], t["datatype"], t["shape"]) for t in model["outputs"]] == [
            ("BOXES", "INT32", [-1, 4]),
            ("TIMINGS_MS", "FP32", [5]),
            ("CROP", "INT32", [3]),
        ]
        config = http.get(f"{base}/config").json()
        assert config["max_batch_size"] == 0
        assert config["input"][0] == {
            "name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1], "optional": False
        }  # fmt: skip
    assert http.get("/v2/models/echo").json()["name"] == "echo"
    assert http.get("/v2/models/decode/ready").status_code == 200


def test_rest_json_infer_with_base64_image(
    http: httpx.Client, face: Fixture, v1_boxes: list[list[int]]
) -> None:
    reply = http.post("/v2/models/face_detector/infer", json=json_infer(face.data, id="f1"))
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["model_name"] == "face_detector"
    assert answer["id"] == "f1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["BOXES"]["shape"] == [1, 4]
    assert np.array(outputs["BOXES"]["data"]).reshape(-1, 4).tolist() == v1_boxes
    assert outputs["CROP"]["data"] == [280, 0, 720]
    decode, preprocess, detect, save, total = outputs["TIMINGS_MS"]["data"]
    assert decode > 0
    assert detect > 0
    assert save == 0
    assert total == pytest.approx(decode + preprocess + detect, rel=1e-3)


@pytest.mark.parametrize("binary_outputs", [True, False])
def test_rest_binary_tensor_extension_without_content_type(
    rest_url: str, face: Fixture, v1_boxes: list[list[int]], binary_outputs: bool
) -> None:
    body, headers = binary_infer(face.data, binary_outputs=binary_outputs)
    # httpx would add a Content-Type for bytes only when asked: none is sent here.
    with httpx.Client(base_url=rest_url, timeout=30) as client:
        reply = client.post(
            "/v2/models/face_detector/versions/1/infer", content=body, headers=headers
        )
    assert reply.status_code == 200, reply.text
    if not binary_outputs:
        assert "inference-header-content-length" not in reply.headers
        outputs = {o["name"]: o for o in reply.json()["outputs"]}
        assert np.array(outputs["BOXES"]["data"]).reshape(-1, 4).tolist() == v1_boxes
        return
    length = int(reply.headers["inference-header-content-length"])
    header = json.loads(reply.content[:length])
    assert [o["name"] for o in header["outputs"]] == ["BOXES", "CROP"]  # as asked, in order
    boxes, crop = header["outputs"]
    size = boxes["parameters"]["binary_data_size"]
    raw = reply.content[length : length + size]
    assert np.frombuffer(raw, "<i4").reshape(boxes["shape"]).tolist() == v1_boxes
    assert crop["data"] == [280, 0, 720]  # this one asked for no binary
    assert len(reply.content) == length + size


def test_rest_save_input_stores_the_frame(
    http: httpx.Client, face: Fixture, settings: Settings
) -> None:
    request = json_infer(face.data)
    request["inputs"].append({"name": "SAVE", "datatype": "BOOL", "shape": [1], "data": [True]})  # type: ignore[attr-defined]
    answer = http.post("/v2/models/face_detector/infer", json=request).json()
    saved = answer["parameters"]["saved_image"]
    assert settings.storage_dir is not None
    assert (Path(settings.storage_dir) / saved).stat().st_size > 0
    rows = (Path(settings.storage_dir) / "records.csv").read_text()
    assert saved in rows
    assert ",rest-v2," in rows


@pytest.mark.parametrize(
    ("path", "request_body", "status", "message"),
    [
        ("/v2/models/nope/infer", None, 404, "unknown model 'nope'"),
        ("/v2/models/face_detector/versions/2/infer", None, 404, "no version '2'"),
        ("/v2/models/face_detector/infer",
         {"inputs": [{"name": "IMAGE", "datatype": "INT32", "shape": [1], "data": [1]}]},
         400, "input IMAGE must be BYTES, not 'INT32'"),
        ("/v2/models/face_detector/infer",
         {"inputs": [{"name": "SAVE", "datatype": "BOOL", "shape": [1], "data": [False]}]},
         400, "missing input IMAGE"),
        ("/v2/models/face_detector/infer",
         {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]},
         400, "base64"),
        ("/v2/models/face_detector/infer",
         {"inputs": [{"name": "PIXELS", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]},
         400, "unknown input 'PIXELS'"),
        ("/v2/models/face_detector/infer", {"inputs": "IMAGE"}, 400, "no inputs"),
    ],
)  # fmt: skip
def test_rest_errors(
    http: httpx.Client,
    face: Fixture,
    path: str,
    request_body: dict[str, object] | None,
    status: int,
    message: str,
) -> None:
    reply = http.post(path, json=request_body or json_infer(face.data))
    assert reply.status_code == status
    assert message in reply.json()["error"]
    assert http.get("/v2/health/ready").status_code == 200  # still serving


def test_rest_malformed_bodies_and_framing(http: httpx.Client, face: Fixture) -> None:
    url = "/v2/models/face_detector/infer"
    assert "not valid JSON" in http.post(url, content=b"{nope").json()["error"]
    body, headers = binary_infer(face.data, binary_outputs=True)
    cut = http.post(url, content=body[:-10], headers=headers)
    assert cut.status_code == 400
    assert "binary_data_size is beyond the body" in cut.json()["error"]
    extra = http.post(url, content=body + b"tail", headers=headers)
    assert "longer than the inputs" in extra.json()["error"]
    lying = http.post(url, content=body, headers={"Inference-Header-Content-Length": "9999999"})
    assert lying.status_code == 400
    framed = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 8}}]}).encode()  # fmt: skip
    broken = http.post(url, content=framed + struct.pack("<I", 100) + b"abcd",
                       headers={"Inference-Header-Content-Length": str(len(framed))})  # fmt: skip
    assert "shorter than its length" in broken.json()["error"]
    unknown_output = json_infer(face.data, outputs=[{"name": "FACES"}])
    assert "unknown output 'FACES'" in http.post(url, json=unknown_output).json()["error"]


def test_rest_oversized_image_is_413(rest_url: str) -> None:
    with httpx.Client(base_url=rest_url, timeout=60) as client:
        fine = client.post("/v2/models/echo/infer", json=json_infer(b"\xff\xd8\xff" + bytes(MiB)))
        too_big = client.post(
            "/v2/models/echo/infer", json=json_infer(b"\xff\xd8\xff" + bytes(9 * MiB))
        )
        after = client.post("/v2/models/echo/infer", json=json_infer(b"\xff\xd8\xff"))
    assert fine.status_code == 200  # echo never decodes: only the size is checked
    assert too_big.status_code == 413
    assert "too large" in too_big.json()["error"]
    assert after.status_code == 200


def test_rest_v2_requests_are_counted(http: httpx.Client, face: Fixture) -> None:
    http.post("/v2/models/echo/infer", json=json_infer(face.data))
    http.post("/v2/models/nope/infer", json=json_infer(face.data))
    text = http.get("/metrics").text
    assert 'facewire_requests_total{model="echo",protocol="rest-v2",status="ok"}' in text
    assert 'facewire_requests_total{model="invalid",protocol="rest-v2",status="not_found"}' in text


# --- gRPC --------------------------------------------------------------------------

NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT


def infer_request(
    image: bytes, model: str = "face_detector", **extra: object
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="g1", **extra)  # type: ignore[arg-type]
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(struct.pack("<I", len(image)) + image)
    return request


def boxes_of(response: pb.ModelInferResponse) -> list[list[int]]:
    names = [o.name for o in response.outputs]
    raw = response.raw_output_contents[names.index("BOXES")]
    return np.frombuffer(raw, "<i4").reshape(-1, 4).tolist()  # type: ignore[no-any-return]


def test_grpc_server_and_model_metadata(v2: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert v2.ServerLive(pb.ServerLiveRequest()).live
    assert v2.ServerReady(pb.ServerReadyRequest()).ready
    meta = v2.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "facewire"
    assert v2.ModelReady(pb.ModelReadyRequest(name="face_detector", version="1")).ready
    model = v2.ModelMetadata(pb.ModelMetadataRequest(name="face_detector"))
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [
        ("BOXES", "INT32", [-1, 4]),
        ("TIMINGS_MS", "FP32", [5]),
        ("CROP", "INT32", [3]),
    ]
    config = v2.ModelConfig(pb.ModelConfigRequest(name="face_detector")).config
    assert config.max_batch_size == 0
    assert config.input[0].data_type == pb.TYPE_STRING
    assert config.output[0].data_type == pb.TYPE_INT32


def test_grpc_infer_raw_and_contents(
    v2: pb_grpc.GRPCInferenceServiceStub, face: Fixture, v1_boxes: list[list[int]]
) -> None:
    started = time.perf_counter()
    response = v2.ModelInfer(infer_request(face.data))
    round_trip_ms = (time.perf_counter() - started) * 1000
    assert response.model_name == "face_detector"
    assert response.id == "g1"
    assert boxes_of(response) == v1_boxes
    # Checked before it is read: indexing a protobuf map inserts a missing key.
    assert "queue_ms" in response.parameters, response.parameters
    queue = response.parameters["queue_ms"]
    assert queue.WhichOneof("parameter_choice") == "double_param", queue
    # The wait happened inside this call, so it fits in its round trip (an ordering of
    # two clocks on one host, whatever the machine's speed).
    assert 0 <= queue.double_param <= round_trip_ms
    # A client that sends contents instead of raw_input_contents.
    by_contents = pb.ModelInferRequest(model_name="face_detector")
    tensor = by_contents.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(face.data)
    assert boxes_of(v2.ModelInfer(by_contents)) == v1_boxes


def test_grpc_stream_answers_in_order_and_survives_errors(
    v2: pb_grpc.GRPCInferenceServiceStub, face: Fixture, noface: Fixture, v1_boxes: list[list[int]]
) -> None:
    requests = [
        infer_request(face.data),
        infer_request(face.data, model="nope"),
        infer_request(noface.data),
        infer_request(b"not an image"),
        infer_request(face.data),
    ]
    answers = list(v2.ModelStreamInfer(iter(requests)))
    assert len(answers) == 5
    assert boxes_of(answers[0].infer_response) == v1_boxes
    assert "unknown model 'nope'" in answers[1].error_message
    assert boxes_of(answers[2].infer_response) == []
    assert "not a supported image" in answers[3].error_message
    assert boxes_of(answers[4].infer_response) == v1_boxes


@pytest.mark.parametrize(
    ("request_factory", "code", "message"),
    [
        (lambda img: infer_request(img, model="nope"), NOT_FOUND, "unknown model"),
        (lambda img: infer_request(img, model_version="3"), NOT_FOUND, "no version"),
        (lambda img: _retyped(infer_request(img)), INVALID, "must be BYTES"),
        (lambda img: pb.ModelInferRequest(model_name="face_detector"),
         INVALID, "missing input IMAGE"),
        (lambda img: infer_request(b"\xff\xd8\xff" + bytes(8 * MiB + 1000)),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "too large"),
        # Over the message's envelope too: grpc refuses it from its length prefix.
        (lambda img: infer_request(b"\xff\xd8\xff" + bytes(9 * MiB)),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ],
)  # fmt: skip
def test_grpc_errors(
    v2: pb_grpc.GRPCInferenceServiceStub,
    face: Fixture,
    request_factory: object,
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        v2.ModelInfer(request_factory(face.data))  # type: ignore[operator]
    assert caught.value.code() == code  # type: ignore[attr-defined]
    assert message in caught.value.details()  # type: ignore[attr-defined]
    assert v2.ServerReady(pb.ServerReadyRequest()).ready


def _retyped(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    request.inputs[0].datatype = "INT32"
    return request


def test_grpc_malformed_message_is_invalid_argument(channel: grpc.Channel) -> None:
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as caught:
        infer(b"\xff\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady")
    with pytest.raises(grpc.RpcError) as caught:
        ready(b"\xff\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_grpc_unknown_model_metadata_is_not_found(v2: pb_grpc.GRPCInferenceServiceStub) -> None:
    for call, request in (
        (v2.ModelMetadata, pb.ModelMetadataRequest(name="nope")),
        (v2.ModelReady, pb.ModelReadyRequest(name="nope")),
        (v2.ModelConfig, pb.ModelConfigRequest(name="face_detector", version="9")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request)  # type: ignore[operator]
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
