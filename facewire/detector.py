"""Haar face detection with one cascade per thread."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

# cv2.data is not in OpenCV's type stubs; the wheels ship the cascades there.
DEFAULT_CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]

Rect = tuple[int, int, int, int]


class FaceDetector:
    """Runs ``detectMultiScale`` with fixed parameters.

    ``CascadeClassifier`` keeps mutable scratch state, so sharing one between threads is
    unsafe; each pipeline thread lazily gets its own (about 1 MB, loaded in ~20 ms).
    """

    def __init__(
        self,
        cascade_path: Path | None = None,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 30,
    ) -> None:
        self.cascade_path = cascade_path or DEFAULT_CASCADE
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self._local = threading.local()
        self.classifier()  # fail at start-up, not on the first request

    def _load(self) -> cv2.CascadeClassifier:
        if not self.cascade_path.is_file():
            raise FileNotFoundError(f"cascade file not found: {self.cascade_path}")
        classifier = cv2.CascadeClassifier(str(self.cascade_path))
        if classifier.empty():
            raise ValueError(f"cascade file cannot be loaded: {self.cascade_path}")
        return classifier

    def classifier(self) -> cv2.CascadeClassifier:
        """This thread's classifier, loaded on first use."""
        classifier: cv2.CascadeClassifier | None = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = self._local.classifier = self._load()
        return classifier

    def detect(self, gray: NDArray[np.uint8]) -> list[Rect]:
        rects = self.classifier().detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in rects]
