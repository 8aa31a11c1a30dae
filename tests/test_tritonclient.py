"""A third-party client, NVIDIA's ``tritonclient``, against both services: health,
metadata, config, inference (binary and JSON over HTTP, raw over gRPC, and the gRPC
stream), and the error cases. The boxes must be the ones /v1/detect finds."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import FIXTURES, Fixture
from tests.servers import ROOT

OUTPUTS = ("BOXES", "TIMINGS_MS", "CROP")


@pytest.fixture(scope="module")
def v1_boxes(rest_url: str, face: Fixture) -> list[list[int]]:
    reply = httpx.post(f"{rest_url}/v1/detect", content=face.data, timeout=30).json()
    return [[b["x"], b["y"], b["width"], b["height"]] for b in reply["boxes"]]


@pytest.fixture
def client(rest_url: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(rest_url.removeprefix("http://"))


def image_input(data: bytes, *, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data], dtype=object), binary_data=binary)
    return tensor


def test_http_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("face_detector")
    assert client.is_model_ready("face_detector", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    model = client.get_model_metadata("face_detector")
    assert [i["name"] for i in model["inputs"]] == ["IMAGE", "SAVE"]
    assert [o["name"] for o in model["outputs"]] == list(OUTPUTS)
    config = client.get_model_config("face_detector")
    assert config["max_batch_size"] == 0


@pytest.mark.parametrize("binary_outputs", [True, False])
def test_http_infer_gives_the_v1_boxes(
    client: httpclient.InferenceServerClient,
    face: Fixture,
    v1_boxes: list[list[int]],
    binary_outputs: bool,
) -> None:
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_outputs) for n in OUTPUTS]
    result = client.infer("face_detector", [image_input(face.data)], outputs=outputs)
    assert result.as_numpy("BOXES").tolist() == v1_boxes
    assert result.as_numpy("CROP").tolist() == [280, 0, 720]
    timings = result.as_numpy("TIMINGS_MS")
    assert timings.dtype == np.float32
    assert timings[2] > 0  # detect


def test_http_errors(client: httpclient.InferenceServerClient, face: Fixture) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [image_input(face.data)])
    assert unknown.value.status() == "404"
    assert "unknown model 'nope'" in unknown.value.message()

    wrong = httpclient.InferInput("IMAGE", [1], "INT32")
    wrong.set_data_from_numpy(np.array([1], dtype=np.int32))
    with pytest.raises(InferenceServerException) as typed:
        client.infer("face_detector", [wrong])
    assert typed.value.status() == "400"
    assert "IMAGE must be BYTES" in typed.value.message()

    save_only = httpclient.InferInput("SAVE", [1], "BOOL")
    save_only.set_data_from_numpy(np.array([False]))
    with pytest.raises(InferenceServerException) as missing:
        client.infer("face_detector", [save_only])
    assert "missing input IMAGE" in missing.value.message()
    assert client.is_server_ready()


def test_grpc_client_and_stream(grpc_target: str, face: Fixture, v1_boxes: list[list[int]]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.tritonclient_grpc", grpc_target, str(FIXTURES / face.name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["live"] is True
    assert seen["ready"] is True
    assert seen["model_ready"] is True
    assert seen["server"]["name"] == "facewire"
    assert [o["name"] for o in seen["model"]["outputs"]] == list(OUTPUTS)
    assert seen["config"]["config"].get("max_batch_size", 0) == 0  # JSON omits 0, the default
    assert seen["config"]["config"]["input"][0]["data_type"] == "TYPE_STRING"
    assert seen["boxes"] == v1_boxes
    assert seen["crop"] == [280, 0, 720]
    assert seen["stream"][0] == {"boxes": v1_boxes}
    assert "unknown model 'nope'" in seen["stream"][1]["error"]
    assert seen["stream"][2] == {"boxes": v1_boxes}
    errors = seen["errors"]
    assert errors["unknown_model"]["status"] == "StatusCode.NOT_FOUND"
    assert errors["wrong_datatype"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "IMAGE must be BYTES" in errors["wrong_datatype"]["message"]
    assert "missing input IMAGE" in errors["missing_input"]["message"]
