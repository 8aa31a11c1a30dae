"""Faults: a service killed with SIGKILL in the middle of saves, then restarted. The
CSV still parses, every row names a complete image, and unfinished files are never
named by a row."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import httpx

from client.readiness import rest_ready
from facewire.audit import audit, complete_image
from tests.conftest import Fixture
from tests.servers import ServiceProcess, wait_for


def rows_of(folder: Path) -> list[dict[str, str]]:
    path = folder / "records.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_every_row_names_a_complete_image(folder: Path) -> list[dict[str, str]]:
    found = audit(folder)
    assert found.problems == []  # whole rows, each naming one complete image, once
    return found.rows


def test_kill_9_in_the_middle_of_saves_loses_nothing_answered(
    tmp_path: Path, face: Fixture
) -> None:
    env = {"FACEWIRE_REST_PORT": "0", "FACEWIRE_STORAGE_DIR": str(tmp_path)}
    with ServiceProcess("rest_service", env) as first:  # stopped whatever fails
        url = f"http://{first.address()}"
        wait_for(lambda: rest_ready(url), what="the service to be ready")
        answered: list[str] = []
        stop = threading.Event()

        def save_forever() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    try:
                        reply = client.post(
                            "/v1/detect", params={"save": "true"}, content=face.data
                        )
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
        finally:
            stop.set()
            for saver in savers:
                saver.join(60)
    rows = assert_every_row_names_a_complete_image(tmp_path)
    named = {row["image"] for row in rows}
    assert set(answered) <= named  # every save that was answered has its row
    assert len(named) == len(rows)  # and no row twice

    with ServiceProcess("rest_service", env) as second:  # the restart
        url = f"http://{second.address()}"
        wait_for(lambda: rest_ready(url), what="the restarted service to be ready")
        reply = httpx.post(f"{url}/v1/detect", params={"save": "true"}, content=face.data)
        assert reply.status_code == 200
        assert second.stop() == 0
    after = assert_every_row_names_a_complete_image(tmp_path)
    assert len(after) == len(rows) + 1
    leftovers = {p.name for p in tmp_path.glob(".*.tmp")}
    assert not leftovers & {row["image"] for row in after}


def test_the_audit_catches_what_it_is_for(tmp_path: Path, face: Fixture) -> None:
    """The checker the fault tests and the soak trust: it must see each kind of damage."""
    settings_env = {"FACEWIRE_REST_PORT": "0", "FACEWIRE_STORAGE_DIR": str(tmp_path)}
    with ServiceProcess("rest_service", settings_env) as service:
        url = f"http://{service.address()}"
        wait_for(lambda: rest_ready(url), what="the service to be ready")
        for _ in range(3):
            reply = httpx.post(f"{url}/v1/detect", params={"save": "true"}, content=face.data)
            assert reply.status_code == 200
    clean = audit(tmp_path)
    assert (clean.problems, clean.orphans, len(clean.rows), clean.images) == ([], [], 3, 3)
    first, second, third = (tmp_path / row["image"] for row in clean.rows)
    assert complete_image(first)
    first.write_bytes(first.read_bytes()[:-2000])  # cut short: still decodes, greyed
    assert not complete_image(first)
    second.unlink()
    (tmp_path / "20990101T000000000000Z_rest_00000000.jpg").write_bytes(third.read_bytes())
    with (tmp_path / "records.csv").open("a") as f:
        f.write("2099-01-01,rest,torn")  # a row cut short
    damaged = audit(tmp_path)
    assert len(damaged.problems) == 3
    assert damaged.problems[0] == f"line 2: {first.name} is missing or incomplete"
    assert damaged.problems[1] == f"line 3: {second.name} is missing or incomplete"
    assert damaged.problems[2] == "line 5: 3 cells, a torn or merged row"
    assert damaged.orphans == ["20990101T000000000000Z_rest_00000000.jpg"]
