"""How closely the fast decodes' boxes follow the colour path's (docs/performance.md).

``python scripts/decode_agreement.py`` runs the pipeline with each decode mode on the
test fixtures, on re-encodings of the face fixture and on frames of the sample clip,
and prints a Markdown table: per set, how often the number of boxes differs and how
often every box edge is within 2 px of the colour path's. Each figure is given with
the detector's faces and, in brackets, with ``detectMultiScale``'s own, which round
each face to a whole pixel of the 300×300 image.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from client.bench import FIXTURES
from client.bench.perf.pipeline import CLOSE_PX, edge_difference
from client.sources import SampleSource
from facewire.detector import FaceDetector, FaceRect, Lend
from facewire.messages import DetectionRequest
from facewire.pipeline import Pipeline
from facewire.settings import DecodeMode, Settings


def frame_sets() -> dict[str, list[bytes]]:
    fixtures = [path.read_bytes() for path in sorted(FIXTURES.glob("*.jpg"))]
    face = cv2.imread(str(FIXTURES / "face_1280x720.jpg"))
    assert face is not None, "the face fixture is missing"
    encodings = [
        cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
        for q in (75, 80, 85, 90, 95, 100)
    ]
    rgb = Image.fromarray(face[:, :, ::-1])
    for quality, progressive in ((75, False), (85, False), (95, False), (80, True), (95, True)):
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, progressive=progressive)
        encodings.append(out.getvalue())
    clip = SampleSource()
    frames = [
        cv2.imencode(".jpg", clip.frame(n), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for n in range(0, 100, 2)
    ]
    return {"fixtures": fixtures, "re-encodings": encodings, "sample clip": frames}


class WholePixelDetector(FaceDetector):
    """``detectMultiScale``'s own boxes: each face rounded to a whole pixel of the
    detector's image (what facewire reported before it kept the fraction)."""

    def detect(
        self, gray: NDArray[np.uint8], helpers: Lend | None = None, spare: int = 0
    ) -> list[FaceRect]:
        size = (self.min_size, self.min_size)
        faces = self.classifier().detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=size
        )
        return [(float(x), float(y), float(w), float(h)) for x, y, w, h in faces]


def agreement(
    mode: DecodeMode, frames: list[bytes], detector: FaceDetector
) -> tuple[int, int, int]:
    """(frames whose box count differs, frames within CLOSE_PX, worst edge)."""
    fast = Pipeline(Settings(decode_mode=mode), detector, None)
    colour = Pipeline(Settings(decode_mode="colour"), detector, None)
    worst = [
        edge_difference(fast.run(DetectionRequest(f)), colour.run(DetectionRequest(f)))
        for f in frames
    ]
    counted = [w for w in worst if w is not None]
    close = sum(w <= CLOSE_PX for w in counted)
    return len(worst) - len(counted), close, max(counted, default=0)


def main() -> None:
    sets = frame_sets()
    print("| decode | set | frames | box count differs | within 2 px | worst edge |")
    print("|---|---|---|---|---|---|")
    modes: tuple[DecodeMode, ...] = ("gray", "reduced")
    for mode in modes:
        for name, frames in sets.items():
            sub = agreement(mode, frames, FaceDetector())
            whole = agreement(mode, frames, WholePixelDetector())
            cells = " | ".join(f"{s} ({w})" for s, w in zip(sub, whole, strict=True))
            print(f"| {mode} | {name} | {len(frames)} | {cells} |")


if __name__ == "__main__":
    main()
