"""Drives a facewire gRPC service with ``tritonclient.grpc``; prints what it saw as JSON.

Run in its own process by test_tritonclient.py: tritonclient's generated modules and
ours both define the ``inference`` protobuf package, and one process's descriptor pool
refuses the same names twice. This script imports nothing from facewire.

    python -m tests.tritonclient_grpc TARGET IMAGE_PATH
"""

from __future__ import annotations

import json
import queue
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

OUTPUTS = ("BOXES", "TIMINGS_MS", "CROP")


def image_input(data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data], dtype=object))
    return tensor


def failure(call) -> dict[str, str]:  # type: ignore[no-untyped-def]
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": str(error.message())}
    return {"status": "no error", "message": ""}


def main(target: str, image_path: str) -> None:
    image = Path(image_path).read_bytes()
    client = grpcclient.InferenceServerClient(target)
    seen: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("face_detector", "1"),
        "server": client.get_server_metadata(as_json=True),
        "model": client.get_model_metadata("face_detector", as_json=True),
        "config": client.get_model_config("face_detector", as_json=True),
    }
    outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
    result = client.infer("face_detector", [image_input(image)], outputs=outputs, request_id="t1")
    seen["boxes"] = result.as_numpy("BOXES").tolist()
    seen["crop"] = result.as_numpy("CROP").tolist()
    seen["timings"] = result.as_numpy("TIMINGS_MS").tolist()

    answers: queue.SimpleQueue[tuple[object, object]] = queue.SimpleQueue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i, model in enumerate(["face_detector", "nope", "face_detector"]):
        client.async_stream_infer(model, [image_input(image)], request_id=str(i), outputs=outputs)
    stream = []
    for _ in range(3):
        result, error = answers.get(timeout=60)
        if error is not None:
            stream.append({"error": str(error.message())})  # type: ignore[attr-defined]
        else:
            stream.append({"boxes": result.as_numpy("BOXES").tolist()})  # type: ignore[attr-defined]
    client.stop_stream()
    seen["stream"] = stream

    wrong = grpcclient.InferInput("IMAGE", [1], "INT32")
    wrong.set_data_from_numpy(np.array([1], dtype=np.int32))
    save_only = grpcclient.InferInput("SAVE", [1], "BOOL")
    save_only.set_data_from_numpy(np.array([False]))
    seen["errors"] = {
        "unknown_model": failure(lambda: client.infer("nope", [image_input(image)])),
        "wrong_datatype": failure(lambda: client.infer("face_detector", [wrong])),
        "missing_input": failure(lambda: client.infer("face_detector", [save_only])),
    }
    client.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
