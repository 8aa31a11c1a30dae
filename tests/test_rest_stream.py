"""The WebSocket stream (``/v1/stream``, rest_service/stream.py) against a real REST
service: answers in order, bad frames answered with the error and the stream going on,
what closes a stream (bad options, a message over the limit, idleness), saving and
metrics as on the other paths."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from facewire.settings import GRPC_ENVELOPE_BYTES, Settings
from tests.cases import LIMIT, BadCase, assert_clean_message, bad_case_ids, bad_cases
from tests.conftest import Fixture, assert_face_near
from tests.servers import rest_server


def ws_url(rest_url: str) -> str:
    return rest_url.replace("http://", "ws://", 1) + "/v1/stream"


@pytest.fixture
def ws(rest_url: str) -> Iterator[ClientConnection]:
    with connect(ws_url(rest_url), compression=None, max_size=None) as connection:
        yield connection


def frame(ws: ClientConnection, image: bytes, **options: object) -> dict[str, object]:
    if options:
        ws.send(json.dumps(options))
    ws.send(image)
    answer = ws.recv(timeout=30)
    assert isinstance(answer, str)
    return json.loads(answer)  # type: ignore[no-any-return]


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_frames_are_answered_in_order(ws: ClientConnection, face: Fixture) -> None:
    for n in range(20):
        ws.send(json.dumps({"frame_id": str(n), "model": "haar" if n % 5 == 0 else "echo"}))
        ws.send(face.data)
    answers = [json.loads(ws.recv(timeout=30)) for _ in range(20)]
    assert [a["frame_id"] for a in answers] == [str(n) for n in range(20)]
    assert {a["protocol"] for a in answers} == {"rest-ws"}
    first = answers[0]
    assert first["model"] == "haar"
    assert len(first["boxes"]) == 1
    assert_face_near(first["boxes"][0], face.faces[0])
    assert first["image"] == {"width": 1280, "height": 720}


def test_a_frame_with_no_options_takes_the_defaults(ws: ClientConnection, face: Fixture) -> None:
    frame(ws, face.data, model="echo", frame_id="a")
    answer = frame(ws, face.data)  # the options applied to the one frame before
    assert (answer["model"], answer["frame_id"]) == ("haar", "")


@pytest.mark.parametrize("case", bad_cases(), ids=bad_case_ids())
def test_a_bad_frame_gets_its_error_and_the_stream_goes_on(
    ws: ClientConnection, case: BadCase, face: Fixture
) -> None:
    answer = frame(ws, case.image, model=case.model, save=case.save, frame_id=case.frame_id)
    assert answer["status"] == (400 if case.kind == "invalid" else 413), answer
    assert (answer["protocol"], answer["frame_id"]) == ("rest-ws", case.frame_id)
    detail = str(answer["detail"])
    assert case.says in detail
    assert_clean_message(detail)
    after = frame(ws, face.data, frame_id="next")
    assert (after["frame_id"], len(after["boxes"])) == ("next", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ("not json", "json"),
        ('{"model": "haar", "colour": "red"}', "colour"),
        ('{"save": "perhaps"}', "save"),
    ],
)
def test_options_that_are_not_a_frames_close_the_stream_with_1007(
    ws: ClientConnection, options: str, names: str
) -> None:
    ws.send(options)
    code, reason = closed_with(ws)
    assert code == 1007
    assert names in reason.lower(), reason


def test_a_message_over_the_limit_closes_the_stream_with_1009(ws: ClientConnection) -> None:
    # A binary frame whose header announces one byte over the limit, then 1 KiB of it:
    # refused from its header (sending it all would race the server's close with a
    # reset). Client frames are masked (RFC 6455 §5.3): here with a zero key.
    size = LIMIT + GRPC_ENVELOPE_BYTES + 1
    ws.socket.sendall(struct.pack("!BBQ", 0x82, 0x80 | 127, size) + b"\0" * 4 + b"\0" * 1024)
    code, _ = closed_with(ws)
    assert code == 1009


def test_an_idle_stream_is_closed_with_1001(tmp_path: Path, face: Fixture) -> None:
    settings = Settings(storage_dir=tmp_path, stream_idle_timeout_s=0.5)
    with rest_server(settings) as url, connect(ws_url(url)) as ws:
        assert frame(ws, face.data, model="echo")["model"] == "echo"
        code, reason = closed_with(ws)  # no frame for half a second
    assert (code, reason) == (1001, "no frame in 0.5 s")


def test_saves_and_metrics_are_the_rest_services(tmp_path: Path, face: Fixture) -> None:
    settings = Settings(storage_dir=tmp_path, threads=1)
    with rest_server(settings) as url, connect(ws_url(url)) as ws:
        answer = frame(ws, face.data, save=True, frame_id="kept")
        saved = answer["saved_image"]
        assert isinstance(saved, str)
        assert (tmp_path / saved).is_file()
        metrics = httpx.get(f"{url}/metrics").text
    rows = (tmp_path / "records.csv").read_text().splitlines()
    assert "kept" in rows[-1], rows[-1]
    assert "rest-ws" in rows[-1], rows[-1]
    assert 'facewire_requests_total{model="haar",protocol="rest-ws",status="ok"} 1.0' in metrics


def test_options_with_a_long_non_ascii_field_close_cleanly_with_1007(
    ws: ClientConnection,
) -> None:
    # The reason names the field: cut to a close frame's 123 bytes, not characters.
    ws.send(json.dumps({"é" * 100: 1}))
    code, reason = closed_with(ws)
    assert code == 1007
    assert len(reason.encode()) <= 123


def test_options_over_4_kib_close_the_stream_with_1009(ws: ClientConnection) -> None:
    ws.send(json.dumps({"frame_id": "x" * 5000}))
    code, reason = closed_with(ws)
    assert code == 1009
    assert "options" in reason
