"""Haar face detection with one cascade per thread, optionally split across threads."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from facewire.settings import Settings

# cv2.data is not in OpenCV's type stubs; the wheels ship the cascades there.
DEFAULT_CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]

#: A raw hit of the cascade, in the detector image's pixels.
Rect = tuple[int, int, int, int]
#: A face: the average of a cluster of hits, kept to a fraction of a pixel.
FaceRect = tuple[float, float, float, float]
Size2 = tuple[int, int]
#: detectMultiScale's own grouping tolerance (cascadedetect.cpp, GROUP_EPS).
GROUP_EPS = 0.2
#: How far OpenCV's rounded average of a cluster can be from the exact one: half a pixel,
#: plus float32 error.
_ROUNDING = 0.5 + 1e-3
#: A split detection cuts the scale pyramid into about this many pieces per thread, so
#: that threads pulling pieces finish together even when the cost estimate is off.
PIECES_PER_THREAD = 4

#: Borrow helper threads: given how many are wanted, submit that many runs of a function.
Lend = Callable[[Callable[[], None], int], None]


def lend_from(pool: Executor) -> Lend:
    """A ``Lend`` backed by an executor; once it is shut down, nothing is lent."""

    def lend(work: Callable[[], None], count: int) -> None:
        for _ in range(count):
            try:
                pool.submit(work)
            except RuntimeError:  # shut down: the caller does all the work itself
                return

    return lend


class FaceDetector:
    """Runs ``detectMultiScale`` with fixed parameters, and groups its hits as it would,
    without rounding the faces to whole pixels (``group_hits``).

    ``CascadeClassifier`` keeps mutable scratch state, so sharing one between threads is
    unsafe; each pipeline thread lazily gets its own (about 1 MB, loaded in ~20 ms).

    A lone request can be split by scale (``detect(..., helpers=...)``): the cascade
    runs each scale of its pyramid independently and ``detectMultiScale`` only groups the
    raw hits at the end, so running ranges of scales on several threads with grouping
    turned off, then grouping the union once in scale order, gives exactly the boxes of
    one call, in the same order.
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
        window = self.classifier().getOriginalWindowSize()  # fail at start-up, not later
        self.window = (int(window[0]), int(window[1]))

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceDetector:
        return cls(
            settings.cascade_path,
            scale_factor=settings.scale_factor,
            min_neighbors=settings.min_neighbors,
            min_size=settings.min_size,
        )

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

    def detect(
        self, gray: NDArray[np.uint8], helpers: Lend | None = None, spare: int = 0
    ) -> list[FaceRect]:
        """Faces in ``gray``. With ``helpers`` and ``spare`` > 0, up to ``spare`` more
        threads share the work; the caller never waits for a helper that has not begun."""
        if helpers is None or spare <= 0:
            hits = self._raw(gray, (self.min_size, self.min_size), (0, 0), 0)
        else:
            hits = self._split(gray, helpers, spare)
        return group_hits(hits, self.min_neighbors)

    def _raw(
        self, gray: NDArray[np.uint8], smallest: Size2, largest: Size2, neighbours: int
    ) -> list[Rect]:
        found = self.classifier().detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=neighbours,
            minSize=smallest,
            maxSize=largest,
        )
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]

    def pieces(self, width: int, height: int, threads: int) -> list[tuple[Size2, Size2]]:
        """Window-size ranges (smallest, largest) that cover every scale exactly once,
        costliest first, each about 1/(threads × PIECES_PER_THREAD) of the work.

        The first piece starts at ``min_size`` and the last is open-ended (largest 0, as
        in one full call), so a scale this estimate misses still lands in some piece.
        """
        scales = _scales(width, height, self.window, self.scale_factor, self.min_size)
        target = sum(cost for _, cost in scales) / (threads * PIECES_PER_THREAD)
        pieces: list[tuple[Size2, Size2, float]] = []
        start, cost = (self.min_size, self.min_size), 0.0
        for (size, scale_cost), following in itertools.pairwise(scales):
            cost += scale_cost
            # Cut only where the next window is larger in both directions, so that the
            # next piece's minimum excludes this scale and includes that one.
            if cost >= target and following[0][0] > size[0] and following[0][1] > size[1]:
                pieces.append((start, size, cost))
                start, cost = following[0], 0.0
        pieces.append((start, (0, 0), cost + (scales[-1][1] if scales else 0.0)))
        pieces.sort(key=lambda piece: -piece[2])
        return [(smallest, largest) for smallest, largest, _ in pieces]

    def _split(self, gray: NDArray[np.uint8], helpers: Lend, spare: int) -> list[Rect]:
        height, width = gray.shape[:2]
        todo = self.pieces(width, height, spare + 1)
        found: list[list[Rect]] = [[] for _ in todo]  # by piece, whatever finishes first
        failures: list[BaseException] = []
        taken = 0  # pieces handed out
        done = 0  # pieces finished (or failed)
        lock = threading.Condition()

        def work() -> None:
            nonlocal taken, done
            while True:
                with lock:
                    if taken >= len(todo):
                        return
                    piece = taken
                    taken += 1
                smallest, largest = todo[piece]
                try:
                    rects = self._raw(gray, smallest, largest, 0)
                except BaseException as error:  # re-raised on the calling thread
                    rects, failures[:] = [], [error]
                with lock:
                    found[piece] = rects
                    done += 1
                    lock.notify_all()

        helpers(work, spare)
        work()
        with lock:
            lock.wait_for(lambda: done == len(todo))
        if failures:
            raise failures[0]
        # The hits in one call's order (smallest scale first), so that grouping them
        # gives the faces in the same order too, not in the order the pieces finished.
        ordered = sorted(range(len(todo)), key=lambda piece: todo[piece][0])
        return [rect for piece in ordered for rect in found[piece]]


def group_hits(hits: list[Rect], neighbours: int) -> list[FaceRect]:
    """detectMultiScale's final step: cluster raw hits, keep clusters with more than
    ``neighbours`` hits (less those nested in a stronger one), and average each.

    OpenCV's ``groupRectangles`` decides which faces there are, exactly as in one
    ``detectMultiScale`` call, but it rounds each average to a whole pixel, and the
    rescale to the 720 frame would magnify that 2.4 times. So each face it returns is
    replaced by the exact average of its cluster: the same clusters, found again here
    with OpenCV's own similarity test.
    """
    if neighbours <= 0 or not hits:
        return [(float(x), float(y), float(w), float(h)) for x, y, w, h in hits]
    kept, _ = cv2.groupRectangles(hits, neighbours, GROUP_EPS)
    if len(kept) == 0:
        return []
    # Every kept face's cluster has more than ``neighbours`` hits, so it is among these.
    averages = _cluster_averages(np.asarray(hits, dtype=np.int64), neighbours)
    faces: list[FaceRect] = []
    for box in np.asarray(kept, dtype=np.float64):
        distance = np.abs(averages - box).max(axis=1)
        nearest = int(distance.argmin())  # the cluster whose exact average rounds to it
        exact = averages[nearest] if distance[nearest] <= _ROUNDING else box
        x, y, w, h = (float(v) for v in exact)
        faces.append((x, y, w, h))
    return faces


def _cluster_averages(hits: NDArray[np.int64], neighbours: int) -> NDArray[np.float64]:
    """The unrounded average of every cluster with more than ``neighbours`` hits.

    Clusters are what ``cv::partition`` finds with ``SimilarRects``: the connected
    groups of hits whose four edges are each within eps × the mean of their smaller
    sides (the same arithmetic, in doubles)."""
    x, y, w, h = hits.T
    delta = GROUP_EPS * (np.minimum.outer(w, w) + np.minimum.outer(h, h)) * 0.5
    similar = np.abs(np.subtract.outer(x, x)) <= delta
    for edge in (y, x + w, y + h):
        similar &= np.abs(np.subtract.outer(edge, edge)) <= delta
    # Each hit takes the smallest label among its neighbours until nothing changes: the
    # index of its connected group's first hit.
    count = len(hits)
    labels = np.arange(count)
    while True:
        spread = np.where(similar, labels, count).min(axis=1)
        if np.array_equal(spread, labels):
            break
        labels = spread
    sizes = np.bincount(labels, minlength=count)
    sums = np.stack([np.bincount(labels, column, count) for column in hits.T], axis=1)
    strong = sizes > neighbours  # only a group's first hit has a size at all
    averages: NDArray[np.float64] = sums[strong] / sizes[strong, np.newaxis]
    return averages


def _scales(
    width: int, height: int, window: Size2, factor: float, min_size: int
) -> list[tuple[Size2, float]]:
    """(window size, estimated cost) of each pyramid scale, in detectMultiScale's order.

    The sizes follow cascadedetect.cpp (factor multiplied up from 1, sizes rounded half
    to even like cvRound); the cost is the number of window positions tried, with the
    cascade stepping 2 pixels at scales up to 2 and 1 pixel beyond.
    """
    scales: list[tuple[Size2, float]] = []
    scale = 1.0
    while True:
        size = (round(window[0] * scale), round(window[1] * scale))
        if size[0] > width or size[1] > height:
            return scales
        if size[0] >= min_size and size[1] >= min_size:
            step = 1 if scale > 2 else 2
            across = max(width / scale - window[0], 0) / step + 1
            down = max(height / scale - window[1], 0) / step + 1
            scales.append((size, across * down))
        scale *= factor
