"""Stores saved frames as JPEGs and one CSV row each.

Invariants, for threads and for several processes sharing one folder:
- the image is complete (temporary file, then rename) before its row is appended;
- each row is one ``write`` to an O_APPEND file, under a file lock, so rows never
  interleave; a failed or short write is truncated away, so no row is ever torn;
- the header is written exactly once, by whoever finds the file empty under the lock;
- with a quota, the usage file is read, checked and rewritten under the same lock, and
  the image is written there too, so that processes sharing the folder never overshoot.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
from filelock import FileLock

from facewire.errors import QuotaExceeded, StorageError
from facewire.imaging import BGRImage
from facewire.messages import DetectionResult
from facewire.settings import Settings

CSV_NAME = "records.csv"
CSV_COLUMNS = (
    "timestamp",
    "protocol",
    "frame_id",
    "image",
    "model",
    "faces",
    "boxes",
    "image_width",
    "image_height",
    "crop_x",
    "crop_y",
    "crop_size",
    "decode_ms",
    "preprocess_ms",
    "detect_ms",
    "save_ms",
    "total_ms",
)
# A leading one of these makes spreadsheets evaluate the cell as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading formula character neutralised by a quote (OWASP's advice)."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


@dataclass(frozen=True, slots=True)
class Record:
    """What one CSV row says about one saved frame, apart from where and when."""

    protocol: str
    result: DetectionResult

    def row(self, timestamp: str, image_name: str, save_ms: float) -> list[str]:
        r = self.result
        t = r.timings
        return [
            timestamp,
            self.protocol,
            spreadsheet_safe(r.frame_id),
            image_name,
            r.model.value,
            str(len(r.boxes)),
            json.dumps([asdict(b) for b in r.boxes], separators=(",", ":")),
            str(r.image.width),
            str(r.image.height),
            str(r.crop.x),
            str(r.crop.y),
            str(r.crop.size),
            f"{t.decode:.3f}",
            f"{t.preprocess:.3f}",
            f"{t.detect:.3f}",
            f"{save_ms:.3f}",
            f"{t.total + save_ms:.3f}",
        ]


def _csv_line(fields: list[str] | tuple[str, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


_HEADER = _csv_line(CSV_COLUMNS)


def _remove_quietly(path: Path) -> None:
    """Best-effort clean-up that never hides the error being reported."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _owner(directory: Path) -> str:
    try:
        info = directory.stat()
    except OSError:
        return "the folder does not exist and cannot be created"
    return f"the folder belongs to {info.st_uid}:{info.st_gid}, mode {info.st_mode & 0o777:o}"


def storage_problem(settings: Settings, protocol: str) -> str | None:
    """Why a service must not start, in one line: saving is on and its storage folder
    cannot be written. None when saving is off or the folder is writable. Both services
    check before serving, so a bind mount nobody can write is refused at start rather
    than failing every save (507) behind a healthy health check."""
    if not settings.save_enabled:
        return None
    problem = FrameStore(settings.storage_dir_for(protocol)).writable_problem()
    if problem is None:
        return None
    return (
        f"saving is on, but {problem}. Make the folder writable by that user (make "
        "docker-up creates ./storage/* as you and runs the containers as you), or turn "
        "saving off with FACEWIRE_SAVE_ENABLED=false"
    )


#: A temporary image this old was left by a dead process (writing one takes milliseconds).
LEFTOVER_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class Quota:
    """The most a storage folder may hold; None means no limit."""

    max_images: int | None = None
    max_bytes: int | None = None

    @property
    def limited(self) -> bool:
        return self.max_images is not None or self.max_bytes is not None

    def refusal(self, usage: Usage, image_bytes: int) -> str | None:
        """Why one more image of ``image_bytes`` would break the quota, or None."""
        if self.max_images is not None and usage.images + 1 > self.max_images:
            return f"storage quota reached: {usage.images} of {self.max_images} images stored"
        if self.max_bytes is not None and usage.bytes + image_bytes > self.max_bytes:
            return (
                f"storage quota reached: {usage.bytes} of {self.max_bytes} bytes stored, "
                f"this frame needs {image_bytes} more"
            )
        return None


@dataclass(frozen=True, slots=True)
class Usage:
    """What the stored images take: how many, and their bytes."""

    images: int = 0
    bytes: int = 0


USAGE_NAME = ".usage.json"


class FrameStore:
    """One storage folder: ``<utc>_<protocol>_<random>.jpg`` files and ``records.csv``."""

    def __init__(self, directory: Path, jpeg_quality: int = 90, quota: Quota | None = None) -> None:
        self.directory = directory
        self.csv_path = directory / CSV_NAME
        self.jpeg_quality = jpeg_quality
        self.quota = quota or Quota()
        with contextlib.suppress(OSError):  # reported by writable_problem(), per save by save()
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(directory / f".{CSV_NAME}.lock"))
        self._usage_path = directory / USAGE_NAME

    def usage(self) -> Usage:
        """The stored images, counted from the folder itself (every ``.jpg`` there)."""
        images = total = 0
        with contextlib.suppress(OSError):
            for path in self.directory.glob("*.jpg"):
                with contextlib.suppress(OSError):
                    total += path.stat().st_size
                    images += 1
        return Usage(images, total)

    def recount(self) -> Usage:
        """Count the folder again and keep the result as the quota's usage: called at
        start-up, so that files removed (or added) by hand while no service ran count."""
        with self._lock:
            usage = self.usage()
            self._write_usage(usage)
        return usage

    def _read_usage(self) -> Usage:
        try:
            raw = json.loads(self._usage_path.read_bytes())
            return Usage(int(raw["images"]), int(raw["bytes"]))
        except (OSError, ValueError, KeyError, TypeError):
            return self.usage()  # missing or damaged: the folder itself is the truth

    def _write_usage(self, usage: Usage) -> None:
        temporary = self._usage_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # best effort: a stale count is recounted at start
            temporary.write_text(json.dumps(asdict(usage)))
            os.replace(temporary, self._usage_path)

    def remove_leftovers(self, older_than_s: float = LEFTOVER_AGE_S) -> list[str]:
        """Delete temporary image files a killed process left behind (a save writes
        ``.<name>.tmp`` and renames it; kill -9 between the two leaves it). Only files
        older than ``older_than_s`` go: another live process may be writing a new one.
        Returns the names removed."""
        removed = []
        cutoff = time.time() - older_than_s
        with contextlib.suppress(OSError):
            for path in self.directory.glob(".*.jpg.tmp"):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path.name)
        return removed

    def writable_problem(self) -> str | None:
        """Why saving would fail right now, in one line, or None. It names the process's
        user and the folder's owner: the usual cause is a bind mount (Docker's, say)
        owned by someone else."""
        probe = self.directory / f".write-check-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return (
                f"the storage folder {self.directory} is not writable by this process "
                f"(uid {os.getuid()}, gid {os.getgid()}; {_owner(self.directory)}): "
                f"{exc.strerror or exc}"
            )
        return None

    def save(self, frame: BGRImage, record: Record) -> str:
        """Store ``frame`` and its row; returns the image's file name."""
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S%fZ}_{record.protocol}_{secrets.token_hex(4)}.jpg"
        start = time.perf_counter_ns()
        image = self._encode(frame)
        if not self.quota.limited:
            self._store(name, image, record, now, start)
            return name
        # The check, the image, the row and the new usage all under the lock: two savers
        # (threads or processes) can never both take the last free place.
        with self._lock:
            usage = self._read_usage()
            refusal = self.quota.refusal(usage, len(image))
            if refusal is not None:
                raise QuotaExceeded(f"{refusal}; the frame was not saved")
            self._store(name, image, record, now, start)
            self._write_usage(Usage(usage.images + 1, usage.bytes + len(image)))
        return name

    def _store(self, name: str, image: bytes, record: Record, now: datetime, start: int) -> None:
        """The image, then its row; no image stays behind without its row."""
        path = self._write_image(name, image)
        try:
            self._append(self._line(record, now, name, start))
        except StorageError:
            _remove_quietly(path)
            raise

    @staticmethod
    def _line(record: Record, now: datetime, name: str, start: int) -> str:
        save_ms = (time.perf_counter_ns() - start) / 1e6
        return _csv_line(record.row(now.isoformat(timespec="microseconds"), name, save_ms))

    def _encode(self, frame: BGRImage) -> bytes:
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise StorageError("could not store the frame: JPEG encoding failed")
        return encoded.tobytes()

    def _write_image(self, name: str, image: bytes) -> Path:
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        try:
            with open(temporary, "xb") as out:
                out.write(image)
            os.replace(temporary, final)
        except OSError as exc:
            _remove_quietly(temporary)
            raise StorageError(f"could not store the frame: {exc.strerror or exc}") from None
        return final

    def _append(self, line: str) -> None:
        payload = line.encode()
        try:
            with self._lock:  # re-entrant: a save within a quota already holds it
                fd = os.open(self.csv_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    self._append_locked(fd, payload)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StorageError(f"could not store the record: {exc.strerror or exc}") from None

    @staticmethod
    def _append_locked(fd: int, payload: bytes) -> None:
        size = os.fstat(fd).st_size
        if size == 0:
            payload = _HEADER.encode() + payload
        elif os.pread(fd, 1, size - 1) != b"\n":
            # A row torn by a crash elsewhere: drop the fragment so the file stays valid.
            tail = os.pread(fd, min(size, 1 << 16), max(0, size - (1 << 16)))
            size = max(0, size - len(tail) + tail.rfind(b"\n") + 1)
            os.ftruncate(fd, size)
            if size == 0:
                payload = _HEADER.encode() + payload
        try:
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(28, "short write: the disk is probably full")
        except OSError:
            os.ftruncate(fd, size)  # never leave a torn row behind
            raise
