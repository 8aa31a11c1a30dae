"""The Open Inference Protocol's view of the pipeline: models, tensors, and the mapping
to and from ``DetectionRequest`` and ``DetectionResult``.

Transport-free, like the rest of the core: the REST adapter reads JSON and the binary
tensor extension into ``InputTensor``, the gRPC adapter reads protobuf into it, and both
write ``OutputTensor`` back in their own form.

The models: ``face_detector`` (the whole pipeline), ``decode`` and ``echo``, version 1.
Input ``IMAGE``: BYTES, shape [1], the encoded image; optional ``SAVE``: BOOL, shape
[1]. Outputs ``BOXES`` (INT32, [-1, 4]: x, y, width, height in the 720 frame),
``TIMINGS_MS`` (FP32, [5]: decode, preprocess, detect, save, total) and ``CROP``
(INT32, [3]: x, y, size).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import facewire
from facewire.errors import InvalidInput, NotFound
from facewire.messages import (
    FRAME_SIZE,
    Box,
    Crop,
    DetectionRequest,
    DetectionResult,
    Model,
    Size,
    Timings,
)

SERVER_NAME = "facewire"
MODEL_VERSION = "1"
PLATFORM = "facewire_opencv_haar"
#: Advertised in the server metadata: Triton's binary tensor data extension (REST).
EXTENSIONS = ("binary_tensor_data",)

#: OIP model name → pipeline model.
MODELS: dict[str, Model] = {"face_detector": Model.HAAR, "decode": Model.DECODE, "echo": Model.ECHO}
#: Pipeline model → its OIP model name.
MODEL_NAMES: dict[Model, str] = {model: name for name, model in MODELS.items()}

#: Where a raw BYTES element's length prefix is: 4 bytes, little-endian.
_LENGTH = struct.Struct("<I")
#: Numeric datatypes facewire sends or reads, as little-endian numpy types.
NUMPY_TYPES = {"INT32": "<i4", "FP32": "<f4", "BOOL": "?"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False


INPUTS = (
    TensorSpec("IMAGE", "BYTES", (1,)),
    TensorSpec("SAVE", "BOOL", (1,), optional=True),
)
OUTPUTS = (
    TensorSpec("BOXES", "INT32", (-1, 4)),
    TensorSpec("TIMINGS_MS", "FP32", (5,)),
    TensorSpec("CROP", "INT32", (3,)),
)
OUTPUT_NAMES = tuple(spec.name for spec in OUTPUTS)


@dataclass(frozen=True)
class InputTensor:
    """One input as a transport delivered it: either ``raw`` (the binary form: packed
    little-endian values, BYTES elements length-prefixed) or ``elements`` (already
    decoded values: ``bytes`` for BYTES, ``bool`` for BOOL)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | None = None
    elements: Sequence[object] | None = None


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray = field(compare=False)

    def raw(self) -> bytes:
        """The binary form: packed little-endian values."""
        return self.values.astype(NUMPY_TYPES[self.datatype], copy=False).tobytes()

    def elements(self) -> list[object]:
        """The values flattened in row-major order, as JSON numbers."""
        flat: list[object] = self.values.ravel().tolist()
        return flat


def find_model(name: str, version: str = "") -> Model:
    """The pipeline model served as ``name``; raises NotFound for any other name or a
    version other than 1 (an empty version means the only one)."""
    model = MODELS.get(name)
    if model is None:
        raise NotFound(f"unknown model {name[:100]!r}; this server has: {', '.join(MODELS)}")
    if version not in ("", MODEL_VERSION):
        raise NotFound(f"model {name!r} has no version {version[:20]!r}; it has version 1")
    return model


def to_request(
    model: Model, inputs: Sequence[InputTensor], *, frame_id: str = "", protocol: str
) -> DetectionRequest:
    """The pipeline request for one inference; refuses missing, unknown or ill-typed
    inputs with InvalidInput."""
    by_name: dict[str, InputTensor] = {}
    for tensor in inputs:
        spec = next((s for s in INPUTS if s.name == tensor.name), None)
        if spec is None:
            expected = ", ".join(s.name for s in INPUTS)
            raise InvalidInput(f"unknown input {tensor.name[:50]!r}; the inputs are {expected}")
        if tensor.name in by_name:
            raise InvalidInput(f"input {tensor.name} is given twice")
        if tensor.datatype != spec.datatype:
            raise InvalidInput(
                f"input {spec.name} must be {spec.datatype}, not {tensor.datatype[:20]!r}"
            )
        if int(np.prod(tensor.shape)) != 1:
            raise InvalidInput(f"input {spec.name} must hold one element (shape [1])")
        by_name[tensor.name] = tensor
    image = by_name.get("IMAGE")
    if image is None:
        raise InvalidInput("missing input IMAGE (BYTES, shape [1]: the encoded image)")
    save = by_name.get("SAVE")
    return DetectionRequest(
        image=_one_bytes(image),
        model=model,
        save=_one_bool(save) if save is not None else False,
        frame_id=frame_id,
        protocol=protocol,
    )


def _one_bytes(tensor: InputTensor) -> bytes:
    elements: list[object] = (
        list(unpack_bytes(tensor.raw)) if tensor.raw is not None else list(tensor.elements or [])
    )
    if len(elements) != 1 or not isinstance(elements[0], bytes):
        raise InvalidInput(f"input {tensor.name} must hold exactly one BYTES element")
    return elements[0]


def _one_bool(tensor: InputTensor) -> bool:
    if tensor.raw is not None:
        if len(tensor.raw) != 1:
            raise InvalidInput(f"input {tensor.name} must be one BOOL byte")
        return tensor.raw != b"\x00"
    elements = list(tensor.elements or [])
    if len(elements) != 1 or not isinstance(elements[0], bool):
        raise InvalidInput(f"input {tensor.name} must hold exactly one BOOL element")
    return elements[0]


def unpack_bytes(raw: bytes) -> list[bytes]:
    """BYTES elements from their binary form: each a 4-byte little-endian length and
    that many bytes."""
    elements, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InvalidInput("malformed BYTES tensor: a length prefix is cut short")
        (length,) = _LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + length > len(raw):
            raise InvalidInput("malformed BYTES tensor: an element is shorter than its length")
        elements.append(raw[pos : pos + length])
        pos += length
    return elements


def pack_bytes(elements: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def to_outputs(result: DetectionResult, requested: Sequence[str] = ()) -> list[OutputTensor]:
    """The outputs asked for (all, when none are named), in the order asked."""
    for name in requested:
        if name not in OUTPUT_NAMES:
            raise InvalidInput(
                f"unknown output {name[:50]!r}; the outputs are {', '.join(OUTPUT_NAMES)}"
            )
    boxes = np.array([[b.x, b.y, b.width, b.height] for b in result.boxes], np.int32)
    t = result.timings
    values = {
        "BOXES": boxes.reshape(len(result.boxes), 4),
        "TIMINGS_MS": np.array([t.decode, t.preprocess, t.detect, t.save, t.total], np.float32),
        "CROP": np.array([result.crop.x, result.crop.y, result.crop.size], np.int32),
    }
    names = list(requested) or list(OUTPUT_NAMES)
    specs = {spec.name: spec for spec in OUTPUTS}
    return [
        OutputTensor(name, specs[name].datatype, tuple(values[name].shape), values[name])
        for name in names
    ]


def from_outputs(
    values: dict[str, np.ndarray], model: Model, frame_id: str, parameters: dict[str, Any]
) -> DetectionResult:
    """The core result from the outputs and the response parameters: ``to_outputs``
    and ``response_parameters`` the other way round. The protocol carries neither the
    original image's size (left 0×0) nor the frame's, which is 720×720 whenever the
    image was decoded (its crop is not empty)."""
    boxes = tuple(Box(*(int(v) for v in row)) for row in values["BOXES"].reshape(-1, 4))
    crop = Crop(*(int(v) for v in values["CROP"]))
    decode, preprocess, detect, save, total = (float(v) for v in values["TIMINGS_MS"])
    saved = parameters.get("saved_image")
    queue = float(parameters.get("queue_ms", 0.0))
    return DetectionResult(
        frame_id=frame_id,
        model=model,
        boxes=boxes,
        frame=Size(FRAME_SIZE, FRAME_SIZE) if crop.size > 0 else Size(0, 0),
        crop=crop,
        image=Size(0, 0),
        timings=Timings(decode, preprocess, detect, save, total, queue),
        saved_image=str(saved) if saved is not None else None,
    )


def response_parameters(result: DetectionResult) -> dict[str, object]:
    """Extra facts every answer carries as response parameters (allowed by the
    protocol, ignored by clients that do not know them)."""
    params: dict[str, object] = {"queue_ms": result.timings.queue}
    if result.saved_image is not None:
        params["saved_image"] = result.saved_image
    return params


def server_metadata() -> dict[str, object]:
    return {"name": SERVER_NAME, "version": facewire.__version__, "extensions": list(EXTENSIONS)}


def model_metadata(name: str) -> dict[str, object]:
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(s) for s in INPUTS],
        "outputs": [_tensor_metadata(s) for s in OUTPUTS],
    }


def _tensor_metadata(spec: TensorSpec) -> dict[str, object]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def model_config(name: str) -> dict[str, object]:
    """Triton's model-config JSON (what perf_analyzer reads): no batching, whole shapes."""
    return {
        "name": name,
        "platform": PLATFORM,
        "backend": "facewire",
        "max_batch_size": 0,
        "input": [
            {
                "name": s.name,
                "data_type": triton_type(s.datatype),
                "dims": list(s.shape),
                "optional": s.optional,
            }
            for s in INPUTS
        ],
        "output": [
            {"name": s.name, "data_type": triton_type(s.datatype), "dims": list(s.shape)}
            for s in OUTPUTS
        ],
    }


def triton_type(datatype: str) -> str:
    """Triton's name for an OIP datatype: TYPE_INT32, and TYPE_STRING for BYTES."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
