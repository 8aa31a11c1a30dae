"""Storage at its limits: the quota, and a disk that really fills up (a small tmpfs).

Either way the requests that cannot be stored get a clear error, detection goes on, and
the folder keeps every invariant (``facewire.audit``): no torn row, no row without its
complete image, every answered save stored exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from client.readiness import rest_ready
from facewire.audit import audit
from facewire.errors import QuotaExceeded
from facewire.messages import DetectionResult, Model
from facewire.settings import Settings
from facewire.storage import USAGE_NAME, FrameStore, Quota, Record
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests import images
from tests.conftest import Fixture
from tests.servers import ServiceProcess, grpc_server, rest_server, wait_for

PAGE = 4096


def save_over_rest(url: str, image: bytes, frame_id: str) -> tuple[int, str]:
    """(status, saved image name or error detail)."""
    reply = httpx.post(
        f"{url}/v1/detect",
        params={"save": "true", "frame_id": frame_id},
        content=image,
        timeout=60,
    )
    body = reply.json()
    return reply.status_code, body["saved_image"] if reply.status_code == 200 else body["detail"]


def save_over_grpc(target: str, image: bytes, frame_id: str) -> tuple[int, str]:
    """The same as ``save_over_rest``, with REST's status for a gRPC refusal's code."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        try:
            reply = stub.Detect(
                pb.DetectRequest(image=image, save=True, frame_id=frame_id), timeout=60
            )
        except grpc.RpcError as error:
            code, details = error.code(), error.details()  # type: ignore[attr-defined]
        else:
            return 200, reply.saved_image
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    return 507, details


def assert_folder_holds_exactly(folder: Path, saved: list[str]) -> None:
    found = audit(folder)
    assert found.problems == []
    assert found.orphans == []
    assert found.unfinished == 0
    assert sorted(row["image"] for row in found.rows) == sorted(saved)


# --- quota ---------------------------------------------------------------------------


@pytest.mark.unit
def test_the_quota_counts_images_and_bytes(tmp_path: Path, face: Fixture) -> None:
    frame = images.decode(face.data)[:, 280:1000]
    record = Record("rest", DetectionResult("x", Model.HAAR))
    probe = FrameStore(tmp_path / "probe")
    size = (probe.directory / probe.save(frame, record)).stat().st_size

    by_count = FrameStore(tmp_path / "count", quota=Quota(max_images=2))
    by_count.save(frame, record)
    by_count.save(frame, record)
    with pytest.raises(QuotaExceeded, match="storage quota reached: 2 of 2 images stored"):
        by_count.save(frame, record)

    by_bytes = FrameStore(tmp_path / "bytes", quota=Quota(max_bytes=2 * size + size // 2))
    by_bytes.save(frame, record)
    by_bytes.save(frame, record)
    with pytest.raises(QuotaExceeded, match=f"this frame needs {size} more"):
        by_bytes.save(frame, record)
    for store in (by_count, by_bytes):
        assert len(audit(store.directory).rows) == 2
        assert store.usage().images == 2


def test_the_quota_holds_across_services_and_processes_and_is_recounted_at_start(
    tmp_path: Path, face: Fixture
) -> None:
    """Three processes' worth of savers race for the last places of one folder."""
    folder = tmp_path / "shared"
    settings = Settings(storage_dir=folder, max_stored_images=5, threads=2)
    env = {
        "FACEWIRE_STORAGE_DIR": str(folder),
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_MAX_STORED_IMAGES": "5",
    }
    with (
        rest_server(settings) as url,
        grpc_server(settings) as target,
        ServiceProcess("rest_service", env) as other,
    ):
        other_url = f"http://{other.address()}"
        wait_for(lambda: rest_ready(other_url), what="second REST process ready")

        def send(i: int) -> tuple[int, str]:
            if i % 3 == 0:
                return save_over_grpc(target, face.data, f"f{i}")
            return save_over_rest(url if i % 3 == 1 else other_url, face.data, f"f{i}")

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(send, range(15)))
        saved = [what for status, what in outcomes if status == 200]
        refused = [what for status, what in outcomes if status != 200]
        assert len(saved) == 5
        assert len(refused) == 10
        assert all(r.startswith("storage quota reached: 5 of 5 images") for r in refused)
        # Detection without saving is not affected by the quota.
        assert httpx.post(f"{url}/v1/detect", content=face.data).json()["boxes"]
        assert other.stop() == 0
    assert_folder_holds_exactly(folder, saved)

    # Someone clears space by hand while nothing runs: the next start counts again.
    for name in saved[:2]:
        (folder / name).unlink()
    with rest_server(settings) as url:
        assert save_over_rest(url, face.data, "after")[0] == 200
        assert save_over_rest(url, face.data, "after-2")[0] == 200
        status, detail = save_over_rest(url, face.data, "after-3")
    assert (status, detail) == (
        507,
        "storage quota reached: 5 of 5 images stored; the frame was not saved",
    )
    assert (folder / USAGE_NAME).exists()


# --- a disk that fills up ------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs), so that writes fail with ENOSPC as on a full
    disk. Mounting needs root (CAP_SYS_ADMIN), as `make test` and CI run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(filler: Path, leave: int) -> None:
    """Grow or shrink ``filler`` so that exactly ``leave`` bytes (whole pages) stay free."""
    target = filler.stat().st_size + free_bytes(filler.parent) - leave
    with filler.open("r+b") as f:
        f.truncate(0)  # tmpfs frees pages on truncate; writing them again takes them
        with contextlib.suppress(OSError):
            f.write(b"\0" * target)
    assert free_bytes(filler.parent) == leave


def test_a_full_disk_refuses_saves_cleanly_and_tears_nothing(
    small_disk: Path, face: Fixture
) -> None:
    folder = small_disk / "storage"
    settings = Settings(storage_dir=folder, threads=2)
    filler = small_disk / "filler"  # holds back room for step 2
    filler.write_bytes(b"\0" * (2 * 1024 * 1024))
    with rest_server(settings) as url, grpc_server(settings) as target:
        # 1. Saves from both services until the disk is full, four at a time.
        def send(i: int) -> tuple[int, str]:
            if i % 2:
                return save_over_grpc(target, face.data, f"f{i}")
            return save_over_rest(url, face.data, f"f{i}")

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(send, range(40)))
        saved = [what for status, what in outcomes if status == 200]
        refused = [what for status, what in outcomes if status != 200]
        assert saved
        assert refused
        no_space = os.strerror(errno.ENOSPC)
        assert all(r.startswith("could not store the") and no_space in r for r in refused)
        assert_folder_holds_exactly(folder, saved)
        assert httpx.post(f"{url}/v1/detect", content=face.data).json()["boxes"]

        # 2. Room for exactly one image and not a byte more, until the row is the write
        # that fails: CSV rows fill its last page, so a row soon needs a new one.
        image_pages = -(-(folder / saved[0]).stat().st_size // PAGE)
        row_refusals = []
        for attempt in range(40):
            fill(filler, image_pages * PAGE)
            status, what = save_over_rest(url, face.data, f"tight-{attempt}")
            if status == 200:
                saved.append(what)
            else:
                assert what.startswith("could not store the record"), what
                row_refusals.append(what)
                break
        assert row_refusals, "no row ever needed a page of its own"
        assert_folder_holds_exactly(folder, saved)  # the image whose row failed is gone

        # 3. Space comes back: so does saving, with nothing restarted.
        filler.unlink()
        status, what = save_over_rest(url, face.data, "after")
        assert status == 200
        saved.append(what)
    assert_folder_holds_exactly(folder, saved)
