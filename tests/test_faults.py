"""Faults: a service killed with SIGKILL in the middle of saves, then restarted. The
CSV still parses, every row names a complete image, and unfinished files are never
named by a row."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import cv2
import httpx

from facewire.storage import CSV_COLUMNS
from tests.conftest import Fixture
from tests.servers import ServiceProcess, rest_ready, wait_for


def rows_of(folder: Path) -> list[dict[str, str]]:
    path = folder / "records.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_every_row_names_a_complete_image(folder: Path) -> list[dict[str, str]]:
    with (folder / "records.csv").open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    assert header == list(CSV_COLUMNS)
    for line in body:
        assert len(line) == len(CSV_COLUMNS), line  # no torn or merged row
    rows = [dict(zip(header, line, strict=True)) for line in body]
    for row in rows:
        image = cv2.imread(str(folder / row["image"]))
        assert image is not None, row["image"]  # complete: it decodes
        assert image.shape == (720, 720, 3)
    return rows


def test_kill_9_in_the_middle_of_saves_loses_nothing_answered(
    tmp_path: Path, face: Fixture
) -> None:
    env = {"FACEWIRE_REST_PORT": "0", "FACEWIRE_STORAGE_DIR": str(tmp_path)}
    first = ServiceProcess("rest_service", env)
    url = f"http://{first.address()}"
    wait_for(lambda: rest_ready(url), what="the service to be ready")
    answered: list[str] = []
    stop = threading.Event()

    def save_forever() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.post("/v1/detect", params={"save": "true"}, content=face.data)
                except httpx.TransportError:
                    return  # the service is gone
                if reply.status_code == 200:
                    answered.append(reply.json()["saved_image"])

    savers = [threading.Thread(target=save_forever) for _ in range(4)]
    for saver in savers:
        saver.start()
    try:
        wait_for(lambda: len(rows_of(tmp_path)) >= 12, timeout=120, what="a dozen saves")
        first.process.kill()  # SIGKILL while four saves are in flight
        first.process.wait(30)
        first._close()
    finally:
        stop.set()
        for saver in savers:
            saver.join(60)
    rows = assert_every_row_names_a_complete_image(tmp_path)
    named = {row["image"] for row in rows}
    assert set(answered) <= named  # every save that was answered has its row
    assert len(named) == len(rows)  # and no row twice

    second = ServiceProcess("rest_service", env)  # the restart
    try:
        url = f"http://{second.address()}"
        wait_for(lambda: rest_ready(url), what="the restarted service to be ready")
        reply = httpx.post(f"{url}/v1/detect", params={"save": "true"}, content=face.data)
        assert reply.status_code == 200
    finally:
        assert second.stop() == 0
    after = assert_every_row_names_a_complete_image(tmp_path)
    assert len(after) == len(rows) + 1
    leftovers = {p.name for p in tmp_path.glob(".*.tmp")}
    assert not leftovers & {row["image"] for row in after}
