"""Where frames come from: a camera, a video file, a folder of images, or the sample."""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
SAMPLE_FPS = 30.0
SAMPLE_LOOP_FRAMES = 300  # a 10 s loop at 30 fps
AUTO_CAMERA = 0  # the camera ``auto`` tries first


class SourceError(Exception):
    """The source cannot be opened or read."""


class FrameSource(Protocol):
    #: Shown in the GUI header.
    description: str
    #: Frames per second to pace at; None for live cameras, which pace themselves.
    fps: float | None

    def read(self) -> Image:
        """The next frame (BGR). Files and the sample loop; raises SourceError on failure."""
        ...

    def close(self) -> None: ...


class CameraSource:
    fps: float | None = None

    def __init__(self, index: int, width: int, height: int) -> None:
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"camera {index} cannot be opened")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.description = f"camera {index}"

    def read(self) -> Image:
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise SourceError(f"{self.description} stopped delivering frames")
        return cast(Image, frame)

    def close(self) -> None:
        self._capture.release()


class VideoSource:
    """A video file, looped."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._capture = cv2.VideoCapture(str(path))
        ok, _ = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise SourceError(f"{path} is not a readable video")
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        reported = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = reported if 0 < reported <= 240 else SAMPLE_FPS
        self.description = f"video {path.name}"

    def read(self) -> Image:
        ok, frame = self._capture.read()
        if not ok:  # the end: loop
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok or frame is None:
            raise SourceError(f"{self.description} cannot be read")
        return cast(Image, frame)

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """The images in a folder, in name order, looped."""

    def __init__(self, path: Path, fps: float = SAMPLE_FPS) -> None:
        self._paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"{path} holds no JPEG, PNG, WebP or BMP images")
        self._next = 0
        self.fps: float | None = fps
        self.description = f"folder {path.name} ({len(self._paths)} images)"

    def read(self) -> Image:
        for _ in range(len(self._paths)):
            path = self._paths[self._next]
            self._next = (self._next + 1) % len(self._paths)
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return cast(Image, frame)
        raise SourceError(f"no image in {self.description} can be read")

    def close(self) -> None:
        pass


def _head() -> Image:
    data = files("client").joinpath("assets/astronaut_head.jpg").read_bytes()
    return cast(Image, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


class SampleSource:
    """A looping clip made from the committed astronaut head: two faces drifting about.

    Frame ``n`` is a pure function of ``n``, so runs are repeatable. Both heads stay in
    the centred square that the pipeline analyses.
    """

    fps: float | None = SAMPLE_FPS

    def __init__(self, width: int = 1280, height: int = 720) -> None:
        self.width, self.height = width, height
        self.description = f"sample ({width}×{height}, looping)"
        head = _head()
        scale = min(width, height) / 720  # the heads keep their place in the analysed square
        big = cv2.resize(head, None, fx=1.35 * scale, fy=1.35 * scale, interpolation=cv2.INTER_AREA)
        small = cv2.flip(cv2.resize(head, None, fx=1.05 * scale, fy=1.05 * scale), 1)
        self._heads = (cast(Image, big), cast(Image, small))
        rows = np.linspace(60, 150, height, dtype=np.float32)[:, None]
        cols = np.linspace(0, 40, width, dtype=np.float32)[None, :]
        shade = (rows + cols).astype(np.uint8)
        self._background = cast(Image, np.dstack([shade + 10, shade, shade]))
        self._n = 0

    def frame(self, n: int) -> Image:
        canvas = self._background.copy()
        side = min(self.width, self.height)
        x0, y0 = (self.width - side) // 2, (self.height - side) // 2
        phase = 2 * math.pi * (n % SAMPLE_LOOP_FRAMES) / SAMPLE_LOOP_FRAMES
        paths = ((0.25, 0.30, 1, 0.0), (0.72, 0.68, 2, 1.3))  # centre x, y; speed; offset
        for head, (cx, cy, speed, offset) in zip(self._heads, paths, strict=True):
            h, w = head.shape[:2]
            x = x0 + int(cx * side + 0.12 * side * math.sin(speed * phase + offset)) - w // 2
            y = y0 + int(cy * side + 0.12 * side * math.cos(phase + offset)) - h // 2
            x = min(max(x, x0), x0 + side - w)
            y = min(max(y, y0), y0 + side - h)
            canvas[y : y + h, x : x + w] = head
        return canvas

    def read(self) -> Image:
        frame = self.frame(self._n)
        self._n += 1
        return frame

    def close(self) -> None:
        pass


def open_source(spec: str, width: int = 1280, height: int = 720) -> tuple[FrameSource, str]:
    """The source named by ``spec``, and a notice for the screen ("" when none).

    ``spec`` is a camera index, a video file, a folder, ``sample``, or ``auto`` (the
    camera if it opens, else the sample).
    """
    if spec == "sample":
        return SampleSource(width, height), ""
    if spec == "auto":
        try:
            return CameraSource(AUTO_CAMERA, width, height), ""
        except SourceError:
            return SampleSource(width, height), "no camera found: showing the built-in sample"
    if spec.isdigit():
        return CameraSource(int(spec), width, height), ""
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path), ""
    if path.is_file():
        return VideoSource(path), ""
    raise SourceError(f"no such source: {spec!r} (a camera index, file, folder, sample or auto)")
