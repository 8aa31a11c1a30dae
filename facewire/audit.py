"""Checks a storage folder against the storage invariants: ``python -m facewire.audit DIR``.

What ``FrameStore`` promises, checked from the outside: the CSV parses with its header
once, every row is whole, every row names one complete image, no image is named twice,
and no finished image lacks its row. The soak, the fault tests and anyone worried about
a folder after a crash use it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facewire.messages import FRAME_SIZE
from facewire.storage import CSV_COLUMNS, CSV_NAME

_JPEG_END = b"\xff\xd9"


@dataclass
class Audit:
    """What a storage folder holds, and every way it breaks the invariants."""

    rows: list[dict[str, str]] = field(default_factory=list)
    images: int = 0
    unfinished: int = 0  # temporary files: ignored by every reader, removed at start-up
    #: Finished images with no row: a save killed between its rename and its row (it was
    #: never answered). Harmless to readers, so not a problem; without a kill, there are none.
    orphans: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def complete_image(path: Path) -> bool:
    """True when ``path`` is a whole stored frame: a JPEG that ends where JPEGs end and
    decodes to FRAME_SIZE × FRAME_SIZE (a cut JPEG still decodes, grey at the bottom)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data.endswith(_JPEG_END):
        return False
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and image.shape[:2] == (FRAME_SIZE, FRAME_SIZE)


def audit(folder: Path) -> Audit:
    """Check ``folder`` (a service's storage folder); never raises for what it finds."""
    result = Audit()
    stored = {p.name for p in folder.glob("*.jpg")}
    result.images = len(stored)
    result.unfinished = sum(1 for _ in folder.glob(".*.jpg.tmp"))
    csv_path = folder / CSV_NAME
    if not csv_path.exists():
        result.orphans = sorted(stored)
        return result
    with csv_path.open(newline="") as f:
        try:
            lines = list(csv.reader(f, strict=True))
        except csv.Error as exc:
            result.problems.append(f"{CSV_NAME} does not parse: {exc}")
            return result
    if not lines:
        result.orphans = sorted(stored)
        return result
    if lines[0] != list(CSV_COLUMNS):
        result.problems.append(f"{CSV_NAME} header is {lines[0][:3]}..., not the columns")
    named: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(CSV_COLUMNS):
            result.problems.append(f"line {number}: {len(line)} cells, a torn or merged row")
            continue
        row = dict(zip(CSV_COLUMNS, line, strict=True))
        result.rows.append(row)
        name = row["image"]
        if name in named:
            result.problems.append(f"line {number}: {name} is named twice")
        named.add(name)
        if not complete_image(folder / name):
            result.problems.append(f"line {number}: {name} is missing or incomplete")
    result.orphans = sorted(stored - named)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    failed = False
    for folder in args.folders:
        found = audit(folder)
        print(
            f"{folder}: {len(found.rows)} rows, {found.images} images, "
            f"{found.unfinished} unfinished, {len(found.orphans)} without a row, "
            f"{len(found.problems)} problem(s)"
        )
        for problem in found.problems:
            print(f"  {problem}")
        failed |= not found.ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
