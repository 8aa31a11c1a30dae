"""Storage rules of section 2, directly and through both services."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import grpc_service.server
from client.readiness import rest_ready
from facewire.messages import DetectionResult, Model
from facewire.settings import Settings
from facewire.storage import CSV_COLUMNS, FrameStore, Record, spreadsheet_safe
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests import images
from tests.conftest import Fixture
from tests.servers import ServiceProcess, grpc_server, rest_server, wait_for


def read_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "records.csv", newline="") as f:
        return list(csv.DictReader(f, strict=True))


@pytest.fixture
def store(tmp_path: Path) -> FrameStore:
    return FrameStore(tmp_path / "store")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("raw", "stored"),
    [("=1+1", "'=1+1"), ("+x", "'+x"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("ok=1", "ok=1")],
)
def test_spreadsheet_formulas_are_neutralised(raw: str, stored: str) -> None:
    assert spreadsheet_safe(raw) == stored


@pytest.mark.unit
def test_header_once_and_rows_in_order(store: FrameStore, face: Fixture) -> None:
    frame = images.decode(face.data)[:, 280:1000]
    names = [
        store.save(frame, Record("rest", DetectionResult(str(i), Model.HAAR))) for i in range(3)
    ]
    lines = (store.directory / "records.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert sum(line == lines[0] for line in lines) == 1
    rows = read_rows(store.directory)
    assert [r["image"] for r in rows] == names
    assert [r["frame_id"] for r in rows] == ["0", "1", "2"]
    assert len(set(names)) == 3
    for row in rows:
        assert row["timestamp"].endswith("+00:00")  # UTC, ISO 8601
    assert not list(store.directory.glob(".*.tmp"))


@pytest.mark.unit
def test_a_torn_last_row_is_dropped_before_the_next_append(
    store: FrameStore, face: Fixture
) -> None:
    frame = images.decode(face.data)[:, 280:1000]
    store.save(frame, Record("rest", DetectionResult("a", Model.HAAR)))
    with open(store.csv_path, "a") as f:
        f.write("2026-01-01T00:00:00+00:00,rest,torn")  # a crash mid-row, no newline
    store.save(frame, Record("rest", DetectionResult("b", Model.HAAR)))
    assert [r["frame_id"] for r in read_rows(store.directory)] == ["a", "b"]


@pytest.fixture
def fragile_settings(tmp_path: Path) -> Settings:
    return Settings(storage_dir=tmp_path / "fragile", threads=2)


@pytest.fixture
def both_services(fragile_settings: Settings) -> Iterator[tuple[str, str]]:
    with rest_server(fragile_settings) as url, grpc_server(fragile_settings) as target:
        yield url, target


def test_failed_save_is_a_clear_error_and_the_services_keep_serving(
    both_services: tuple[str, str], fragile_settings: Settings, face: Fixture
) -> None:
    url, target = both_services
    folder = fragile_settings.storage_dir_for("rest")
    with httpx.Client(base_url=url) as http, grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        assert http.post("/v1/detect", params={"save": "true"}, content=face.data).is_success
        # Storage becomes unusable (as root, permissions do not stop us; a file does).
        shutil.rmtree(folder)
        folder.write_text("not a folder")
        response = http.post("/v1/detect", params={"save": "true"}, content=face.data)
        assert response.status_code == 507
        assert response.json()["detail"].startswith("could not store the frame")
        with pytest.raises(grpc.RpcError) as caught:
            stub.Detect(pb.DetectRequest(image=face.data, save=True), timeout=30)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "could not store the frame" in caught.value.details()
        # Detection without saving is unaffected, and saving recovers with the folder.
        assert len(http.post("/v1/detect", content=face.data).json()["boxes"]) == 1
        folder.unlink()
        folder.mkdir()
        assert http.post("/v1/detect", params={"save": "true"}, content=face.data).is_success
        assert len(read_rows(folder)) == 1


def test_concurrent_saves_from_threads_and_processes(tmp_path: Path, face: Fixture) -> None:
    """200 saves from threads over REST, gRPC and a second REST process, one folder."""
    from tests.servers import ServiceProcess

    settings = Settings(storage_dir=tmp_path / "shared", threads=2)
    env = {"FACEWIRE_STORAGE_DIR": str(settings.storage_dir), "FACEWIRE_REST_PORT": "0"}
    with (
        rest_server(settings) as url,
        grpc_server(settings) as target,
        ServiceProcess("rest_service", env) as worker,
    ):
        other_url = f"http://{worker.address()}"
        wait_for(lambda: rest_ready(other_url), what="second REST process ready")

        def send(i: int) -> str:
            frame_id = f"frame-{i}"
            if i % 3 == 0:
                with grpc.insecure_channel(target) as channel:
                    reply = pb_grpc.FaceDetectionStub(channel).Detect(
                        pb.DetectRequest(image=face.data, save=True, frame_id=frame_id), timeout=60
                    )
                    return reply.saved_image
            base = url if i % 3 == 1 else other_url
            response = httpx.post(
                f"{base}/v1/detect",
                params={"save": "true", "frame_id": frame_id},
                content=face.data,
                timeout=60,
            )
            response.raise_for_status()
            return str(response.json()["saved_image"])

        with ThreadPoolExecutor(16) as pool:
            names = list(pool.map(send, range(200)))
        assert worker.stop() == 0

    folder = settings.storage_dir
    assert folder is not None
    rows = read_rows(folder)
    assert len(rows) == 200
    assert sorted(r["image"] for r in rows) == sorted(names)
    assert sorted(r["frame_id"] for r in rows) == sorted(f"frame-{i}" for i in range(200))
    assert {r["protocol"] for r in rows} == {"rest", "grpc"}
    assert len(list(folder.glob("*.jpg"))) == 200
    for row in rows:
        assert len(row) == len(CSV_COLUMNS)
        assert row["faces"] == "1"
        image = folder / row["image"]
        assert images.decode(image.read_bytes()).shape == (720, 720, 3)
    header = ",".join(CSV_COLUMNS)
    assert (folder / "records.csv").read_text().count(header) == 1


@pytest.mark.unit
def test_an_unusable_folder_is_reported_at_start_up_and_saves_fail_cleanly(
    tmp_path: Path, face: Fixture
) -> None:
    from facewire.errors import StorageError

    not_a_folder = tmp_path / "storage"
    not_a_folder.write_text("a file where the folder should be")
    store = FrameStore(not_a_folder)  # start-up goes on: detection does not need storage
    problem = store.writable_problem()
    assert problem is not None
    assert "is not writable" in problem
    frame = images.decode(face.data)[:, 280:1000]
    with pytest.raises(StorageError, match="could not store the frame"):
        store.save(frame, Record("rest", DetectionResult("x", Model.HAAR)))
    assert FrameStore(tmp_path / "fine").writable_problem() is None


@pytest.mark.parametrize("module", ["rest_service", "grpc_service"])
def test_a_service_refuses_to_start_when_saving_cannot_write(tmp_path: Path, module: str) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("a file where a folder would have to be made")
    env = {
        "FACEWIRE_STORAGE_DIR": str(blocked / "storage"),
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_GRPC_PORT": "0",
    }
    with ServiceProcess(module, env) as service:
        assert service.process.wait(60) == 1
    refusal = [line for line in service.lines if "cannot start" in line]
    assert len(refusal) == 1, service.output
    assert "saving is on, but the storage folder" in refusal[0]
    assert f"uid {os.getuid()}" in refusal[0]
    assert "FACEWIRE_SAVE_ENABLED=false" in refusal[0]
    with ServiceProcess(module, {**env, "FACEWIRE_SAVE_ENABLED": "false"}) as service:
        service.address()  # saving off: nothing to write, so it serves


def test_readiness_follows_the_storage_folder_while_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_service.server, "READINESS_INTERVAL_S", 0.05)
    folder = tmp_path / "storage"
    settings = Settings(storage_dir=folder, threads=1)
    with (
        rest_server(settings) as url,
        grpc_server(settings) as target,
        grpc.insecure_channel(target) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)

        def grpc_status() -> int:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""))
            return int(reply.status)

        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
        assert grpc_status() == health_pb2.HealthCheckResponse.SERVING
        # The folder goes away and a file takes its place: nothing can be saved.
        folder.rename(tmp_path / "moved")
        folder.write_text("")
        answer = httpx.get(f"{url}/readyz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "not ready"
        assert "storage folder" in answer.json()["reason"]
        wait_for(
            lambda: grpc_status() == health_pb2.HealthCheckResponse.NOT_SERVING,
            what="gRPC health NOT_SERVING",
        )
        folder.unlink()
        (tmp_path / "moved").rename(folder)
        assert httpx.get(f"{url}/readyz").status_code == 200
        wait_for(
            lambda: grpc_status() == health_pb2.HealthCheckResponse.SERVING,
            what="gRPC health SERVING again",
        )


def test_a_restart_removes_only_old_unfinished_images(tmp_path: Path, face: Fixture) -> None:
    # What kill -9 between writing and renaming leaves, next to a write still going on.
    dead = tmp_path / ".20260101T000000000000Z_rest_0badc0de.jpg.tmp"
    live = tmp_path / ".20260101T000001000000Z_grpc_c0ffee00.jpg.tmp"
    for path in (dead, live):
        path.write_bytes(b"\xff\xd8 half a JPEG")
    old = dead.stat().st_mtime - 3600
    os.utime(dead, (old, old))
    settings = Settings(storage_dir=tmp_path)
    with rest_server(settings) as url:
        reply = httpx.post(f"{url}/v1/detect", params={"save": "true"}, content=face.data)
        assert reply.status_code == 200
    assert not dead.exists()
    assert live.exists()  # young: maybe another process's save in progress
    saved = reply.json()["saved_image"]
    with (tmp_path / "records.csv").open(newline="") as f:
        assert [row["image"] for row in csv.DictReader(f)] == [saved]


def test_saving_turned_off_refuses_saves_and_writes_nothing(tmp_path: Path, face: Fixture) -> None:
    settings = Settings(storage_dir=tmp_path, save_enabled=False)
    with rest_server(settings) as url, grpc_server(settings) as target:
        refused = httpx.post(f"{url}/v1/detect", params={"save": "true"}, content=face.data)
        assert refused.status_code == 403
        assert refused.json()["detail"] == "saving is turned off on this server"
        assert httpx.post(f"{url}/v1/detect", content=face.data).status_code == 200
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.FaceDetectionStub(channel)
            with pytest.raises(grpc.RpcError) as denied:
                stub.Detect(pb.DetectRequest(image=face.data, save=True))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            assert len(stub.Detect(pb.DetectRequest(image=face.data)).boxes) == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_no_client_string_becomes_part_of_a_path(tmp_path: Path, face: Fixture) -> None:
    hostile = "../../../../tmp/owned"
    settings = Settings(storage_dir=tmp_path / "store")
    with rest_server(settings) as url:
        reply = httpx.post(
            f"{url}/v1/detect",
            params={"save": "true", "frame_id": hostile},
            headers={"X-Frame-Id": "/etc/passwd"},
            content=face.data,
        ).json()
    saved = reply["saved_image"]
    assert "/" not in saved
    assert ".." not in saved
    assert (tmp_path / "store" / saved).is_file()
    assert sorted(
        p.name for p in (tmp_path / "store").iterdir() if not p.name.startswith(".")
    ) == sorted([saved, "records.csv"])
    assert not Path("/tmp/owned").exists()
    assert reply["frame_id"] == hostile  # kept as data, in the answer and the CSV only
