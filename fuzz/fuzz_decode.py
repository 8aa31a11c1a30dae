"""Coverage-guided fuzzing of the decode path with atheris: ``make fuzz``.

Every input goes through the pipeline's own checks and decode (model ``decode``). The
only acceptable outcomes are an answer or a ``FacewireError`` (the client errors the
services turn into 4xx); anything else is a crash that atheris reports with the input
that caused it. The committed fixtures seed the corpus, so mutations start from real
JPEGs; PNG, WebP and BMP seeds are made from them at start-up.

    python fuzz/fuzz_decode.py -max_total_time=600          # a long run
    python fuzz/fuzz_decode.py -runs=3000                    # CI: a short one
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["facewire"]):
    from facewire.detector import FaceDetector
    from facewire.errors import FacewireError
    from facewire.messages import DetectionRequest, Model
    from facewire.pipeline import Pipeline
    from facewire.settings import Settings

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Small limits keep each run fast; the logic under test is the same at any size.
PIPELINES = [
    Pipeline(Settings(max_image_pixels=4_000_000, decode_mode=mode), FaceDetector(), None)
    for mode in ("gray", "reduced", "colour")
]


def test_one_input(data: bytes) -> None:
    pipeline = PIPELINES[len(data) % len(PIPELINES)]
    with contextlib.suppress(FacewireError):  # a clean client error: what bad input gets
        pipeline.run(DetectionRequest(data, model=Model.DECODE))


def seed_corpus() -> str:
    folder = Path(tempfile.mkdtemp(prefix="facewire-fuzz-corpus-"))
    face = cv2.imread(str(ROOT / "client" / "bench" / "fixtures" / "face_1280x720.jpg"))
    small = cv2.resize(face, (64, 36), interpolation=cv2.INTER_AREA)
    for ext in (".jpg", ".png", ".webp", ".bmp"):
        ok, encoded = cv2.imencode(ext, small)
        assert ok
        (folder / f"seed{ext}").write_bytes(encoded.tobytes())
    ok, progressive = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    (folder / "progressive.jpg").write_bytes(np.asarray(progressive).tobytes())
    return str(folder)


def main() -> None:
    artifacts = ROOT / "fuzz" / "artifacts"  # crashing inputs land here (gitignored)
    artifacts.mkdir(exist_ok=True)
    options = (
        []
        if any(a.startswith("-artifact_prefix") for a in sys.argv)
        else [f"-artifact_prefix={artifacts}/"]
    )
    argv = [*sys.argv, *options, seed_corpus()]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
