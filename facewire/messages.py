"""Transport-free request and result types shared by every adapter."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from facewire.errors import InvalidInput

#: The detector's working frame: every box is in this 720×720 square.
FRAME_SIZE = 720
#: The side the crop is shrunk to before detection.
DETECT_SIZE = 300


class Model(StrEnum):
    """What the pipeline runs for one request."""

    HAAR = "haar"  # decode, preprocess, detect (the whole pipeline)
    DECODE = "decode"  # decode and preprocess only, no boxes
    ECHO = "echo"  # size checks only: what the protocol costs with no image work

    @classmethod
    def parse(cls, name: str | None) -> Model:
        """The model called ``name``; empty or None means the default, ``haar``."""
        if not name:
            return cls.HAAR
        model = cls._value2member_map_.get(name)  # a dict lookup: cls(name) costs 1 µs
        if model is None:
            known = ", ".join(m.value for m in cls)
            raise InvalidInput(f"unknown model {name!r}; expected one of: {known}")
        return model  # type: ignore[return-value]

    @classmethod
    def label(cls, name: str | None) -> str:
        """``name`` as a metrics label: a known model (empty means haar), or "invalid"
        (never the client's own text, which would make a label per request)."""
        if not name:
            return cls.HAAR.value
        return name if name in cls._value2member_map_ else "invalid"


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Crop:
    """The centred square that was analysed, in the original image's pixels."""

    x: int
    y: int
    size: int


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds per stage. ``total`` is the pipeline's own work; ``queue`` is the wait
    for a pipeline thread before it, which ``total`` leaves out."""

    decode: float = 0.0
    preprocess: float = 0.0
    detect: float = 0.0
    save: float = 0.0
    total: float = 0.0
    queue: float = 0.0

    @property
    def in_server(self) -> float:
        """All the time the request spent in the server's data plane: waiting plus working.
        End-to-end minus this is what the protocol and the frameworks cost."""
        return self.queue + self.total


_FRAME = Size(FRAME_SIZE, FRAME_SIZE)
_NO_CROP = Crop(0, 0, 0)
_NO_IMAGE = Size(0, 0)
_NO_TIMINGS = Timings()


@dataclass(frozen=True, slots=True)
class DetectionRequest:
    image: bytes
    model: Model = Model.HAAR
    save: bool = False
    frame_id: str = ""
    #: Which adapter received it ("rest", "grpc", "grpc-stream"); stored in the CSV.
    protocol: str = "rest"


@dataclass(frozen=True, slots=True)
class DetectionResult:
    frame_id: str
    model: Model
    boxes: tuple[Box, ...] = ()
    # Shared immutable defaults rather than factories: echo answers build one per call.
    frame: Size = _FRAME
    crop: Crop = _NO_CROP
    image: Size = _NO_IMAGE
    timings: Timings = _NO_TIMINGS
    saved_image: str | None = None
