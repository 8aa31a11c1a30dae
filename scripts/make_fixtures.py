"""Build the committed test images from scikit-image's bundled, public-domain photos.

- face_1280x720.jpg: NASA's astronaut portrait (public domain), scaled 1.25x and placed
  on a neutral frame so that the face sits at a known place.
- noface_1280x720.jpg: NASA's rocket photo (public domain), no face.
- client/assets/astronaut_head.jpg: the astronaut's head, which the GUI's built-in
  ``sample`` source moves around a frame (so the lab works without a camera).

The expected face box is derived geometrically from where the face is in the original
photo, not from running our detector, and written to fixtures.json for the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "client" / "bench" / "fixtures"
ASSETS = ROOT / "client" / "assets"
WIDTH, HEIGHT = 1280, 720
FRAME = 720
JPEG_QUALITY = 90

# Where OpenCV's default frontal-face cascade finds the face in data.astronaut() (512x512).
ASTRONAUT_FACE = (177, 66, 95, 95)
SCALE = 1.25
PASTE_AT = (360, 40)  # top-left of the scaled portrait in the 1280x720 frame


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def face_frame() -> tuple[np.ndarray, dict[str, int]]:
    portrait = _bgr(data.astronaut())
    side = round(portrait.shape[0] * SCALE)
    portrait = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
    # A vertical grey gradient: no texture that could look like a face.
    column = np.linspace(70, 170, HEIGHT, dtype=np.uint8)[:, None, None]
    canvas = np.broadcast_to(column, (HEIGHT, WIDTH, 3)).copy()
    x, y = PASTE_AT
    canvas[y : y + side, x : x + side] = portrait
    fx, fy, fw, fh = ASTRONAUT_FACE
    crop_x0 = (WIDTH - FRAME) // 2  # the pipeline's centre crop
    expected = {
        "x": round(x + fx * SCALE) - crop_x0,
        "y": round(y + fy * SCALE),
        "width": round(fw * SCALE),
        "height": round(fh * SCALE),
    }
    return canvas, expected


def noface_frame() -> np.ndarray:
    rocket = _bgr(data.rocket())
    return cv2.resize(rocket, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


# The head, with margins the cascade needs around the face, in data.astronaut() pixels.
HEAD = (135, 20, 180, 190)  # x, y, width, height


def astronaut_head() -> np.ndarray:
    x, y, w, h = HEAD
    return _bgr(data.astronaut())[y : y + h, x : x + w].copy()


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    path.write_bytes(encoded.tobytes())


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    face, expected = face_frame()
    _write_jpeg(OUT / "face_1280x720.jpg", face)
    _write_jpeg(OUT / "noface_1280x720.jpg", noface_frame())
    manifest = {
        "face_1280x720.jpg": {"size": [WIDTH, HEIGHT], "faces_in_720_frame": [expected]},
        "noface_1280x720.jpg": {"size": [WIDTH, HEIGHT], "faces_in_720_frame": []},
    }
    ASSETS.mkdir(parents=True, exist_ok=True)
    _write_jpeg(ASSETS / "astronaut_head.jpg", astronaut_head())
    (OUT / "fixtures.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote fixtures to {OUT}: expected face {expected}")


if __name__ == "__main__":
    main()
