"""The REST service, over real HTTP on an ephemeral port."""

from __future__ import annotations

import csv
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from facewire.dataplane import DataPlane
from facewire.messages import DetectionRequest, DetectionResult
from facewire.settings import Settings
from tests.cases import LIMIT, BadCase, assert_clean_message, bad_case_ids, bad_cases
from tests.conftest import Fixture, assert_face_near
from tests.servers import rest_server


def post(
    conn: http.client.HTTPConnection,
    body: bytes,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object], http.client.HTTPResponse]:
    query = f"?{urlencode(params)}" if params else ""
    conn.request("POST", f"/v1/detect{query}", body=body, headers=headers or {})
    response = conn.getresponse()
    payload = json.loads(response.read())
    return response.status, payload, response


def test_detect_raw_body(http: httpx.Client, face: Fixture) -> None:
    response = http.post("/v1/detect", content=face.data, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200
    body = response.json()
    assert body["protocol"] == "rest"
    assert body["model"] == "haar"
    assert body["frame_id"] == ""
    assert len(body["boxes"]) == 1
    assert_face_near(body["boxes"][0], face.faces[0])
    assert body["frame"] == {"width": 720, "height": 720}
    assert body["crop"] == {"x": 280, "y": 0, "size": 720}
    assert body["image"] == {"width": 1280, "height": 720}
    assert set(body["timings_ms"]) == {"decode", "preprocess", "detect", "save", "total", "queue"}
    assert body["saved_image"] is None


def test_detect_multipart_file_field(http: httpx.Client, face: Fixture) -> None:
    raw = http.post("/v1/detect", content=face.data).json()
    multipart = http.post(
        "/v1/detect", files={"file": ("frame.jpg", face.data, "image/jpeg")}
    ).json()
    assert multipart["boxes"] == raw["boxes"]
    assert multipart["crop"] == raw["crop"]


def test_multipart_without_file_field(http: httpx.Client, face: Fixture) -> None:
    response = http.post("/v1/detect", files={"image": ("frame.jpg", face.data, "image/jpeg")})
    assert response.status_code == 400
    assert "'file' field" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/json", "image/png", "application/octet-stream"],
)
def test_wrong_or_missing_content_type_is_accepted(
    conn: http.client.HTTPConnection, face: Fixture, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, body, _ = post(conn, face.data, headers=headers)
    assert status == 200
    assert len(body["boxes"]) == 1


def test_multipart_declared_but_raw_bytes_sent(http: httpx.Client, face: Fixture) -> None:
    response = http.post(
        "/v1/detect",
        content=face.data,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 200
    assert len(response.json()["boxes"]) == 1


def test_frame_id_from_query_or_header(http: httpx.Client, face: Fixture) -> None:
    by_header = http.post("/v1/detect", content=face.data, headers={"X-Frame-Id": "h-1"})
    assert by_header.json()["frame_id"] == "h-1"
    both = http.post(
        "/v1/detect",
        params={"frame_id": "q-1", "model": "echo"},
        content=face.data,
        headers={"X-Frame-Id": "h-1"},
    )
    assert both.json()["frame_id"] == "q-1"


def test_save_writes_image_and_row(http: httpx.Client, face: Fixture, settings: Settings) -> None:
    response = http.post(
        "/v1/detect", params={"save": "true", "frame_id": "=cmd|calc"}, content=face.data
    )
    assert response.status_code == 200
    body = response.json()
    name = body["saved_image"]
    assert name.endswith(".jpg")
    assert "_rest_" in name
    assert body["timings_ms"]["save"] > 0
    folder = settings.storage_dir_for("rest")
    assert (folder / name).stat().st_size > 0
    with open(folder / "records.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image"] == name]
    assert len(rows) == 1
    row = rows[0]
    assert row["protocol"] == "rest"
    assert row["model"] == "haar"
    assert row["faces"] == "1"
    assert row["frame_id"] == "'=cmd|calc"  # formula injection neutralised
    assert json.loads(row["boxes"]) == body["boxes"]


@pytest.mark.parametrize("case", bad_cases(), ids=bad_case_ids())
def test_bad_input_gets_4xx_json_and_the_connection_serves_on(
    conn: http.client.HTTPConnection, case: BadCase, face: Fixture
) -> None:
    params = {"model": case.model, "save": str(case.save).lower()}
    if case.frame_id:
        params["frame_id"] = case.frame_id
    status, body, response = post(conn, case.image, params)
    assert status == (400 if case.kind == "invalid" else 413), body
    assert response.getheader("content-type") == "application/json"
    detail = body["detail"]
    assert isinstance(detail, str)
    assert case.says in detail
    assert_clean_message(detail)
    socket_before = conn.sock
    assert socket_before is not None, "the server closed the connection after the error"
    status, body, _ = post(conn, face.data)
    assert status == 200
    assert len(body["boxes"]) == 1
    assert conn.sock is socket_before  # the very same TCP connection


def test_huge_declared_upload_is_refused_without_reading(rest_url: str) -> None:
    parts = urlsplit(rest_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.putrequest("POST", "/v1/detect")
    conn.putheader("Content-Length", str(LIMIT * 100))
    conn.endheaders()
    conn.send(b"\xff\xd8\xff" + b"\x00" * 1024)  # a start; the rest never comes
    response = conn.getresponse()
    assert response.status == 413
    assert "upload too large" in json.loads(response.read())["detail"]
    assert response.getheader("connection") == "close"
    conn.close()


def test_chunked_body_over_the_limit(http: httpx.Client, face: Fixture) -> None:
    def chunks() -> Iterator[bytes]:
        piece = b"\x00" * (1024 * 1024)
        for _ in range(LIMIT // len(piece) + 2):
            yield piece

    response = http.post("/v1/detect", content=chunks())
    assert response.status_code == 413
    assert "upload too large" in response.json()["detail"]
    assert http.post("/v1/detect", content=face.data).status_code == 200


def test_malformed_query_value(http: httpx.Client, face: Fixture) -> None:
    """FastAPI parses the query; its refusals are 400s in facewire's own words."""
    for refused in ("perhaps", ""):
        response = http.post("/v1/detect", params={"save": refused}, content=face.data)
        assert response.status_code == 400
        assert response.json()["detail"] == f"save must be true or false, not {refused!r}"
    for spelling, saved in (("YES", True), ("on", True), ("0", False), ("false", False)):
        params = {"save": spelling, "model": "decode"}
        reply = http.post("/v1/detect", params=params, content=face.data)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["saved_image"] is not None) is saved


def test_health_ready_metrics_and_docs(tmp_path: Path, face: Fixture) -> None:
    with (
        rest_server(Settings(storage_dir=tmp_path, threads=1)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        http.post("/v1/detect", params={"model": "nope"}, content=face.data)
        http.post("/v1/detect", content=b"")
        http.post("/v1/detect", params={"save": "perhaps"}, content=face.data)  # FastAPI's 400
        http.post("/v1/detect", content=face.data)
        metrics = http.get("/metrics")
        docs = http.get("/docs")
        schema = http.get("/openapi.json").json()
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'facewire_requests_total{model="haar",protocol="rest",status="ok"} 1.0' in text
    assert (
        'facewire_requests_total{model="invalid",protocol="rest",status="invalid_input"} 1.0'
        in text
    )
    assert (
        'facewire_requests_total{model="haar",protocol="rest",status="invalid_input"} 2.0' in text
    )
    assert 'facewire_request_duration_seconds_bucket{le="0.5",model="haar",protocol="rest"}' in text
    assert 'facewire_stage_duration_seconds_count{protocol="rest",stage="detect"}' in text
    assert docs.status_code == 200
    operation = schema["paths"]["/v1/detect"]["post"]
    assert {p["name"] for p in operation["parameters"]} == {
        "save",
        "model",
        "frame_id",
        "x-frame-id",
    }
    assert "DetectResponse" in str(operation["responses"]["200"])
    body = operation["requestBody"]["content"]
    assert {"image/*", "application/octet-stream", "multipart/form-data"} <= set(body)


@pytest.mark.parametrize("opentelemetry", [False, True])
def test_fastapi_opentelemetry_is_consulted_only_when_turned_on(
    opentelemetry: bool, tmp_path: Path, face: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off by default: FastAPI's native telemetry asks OpenTelemetry's global providers
    on every request whether one is configured, which costs about 10 µs a request."""
    from opentelemetry import trace

    asked = []
    real = trace.get_tracer_provider

    def counting() -> trace.TracerProvider:
        asked.append(1)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counting)
    settings = Settings(storage_dir=tmp_path, threads=1, opentelemetry=opentelemetry)
    with rest_server(settings) as url:
        before = len(asked)
        for _ in range(3):
            reply = httpx.post(f"{url}/v1/detect", params={"model": "echo"}, content=face.data)
            assert reply.status_code == 200
        per_request = (len(asked) - before) / 3
    assert (per_request >= 1) is opentelemetry


def test_an_unexpected_error_is_a_500_and_the_service_serves_on(
    tmp_path: Path, face: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug inside the core reaches the 500 handler; the request is counted."""
    settings = Settings(storage_dir=tmp_path, threads=1)
    dataplane = DataPlane.from_settings(settings, "rest")

    def broken(request: DetectionRequest) -> DetectionResult:
        raise RuntimeError("a bug")

    monkeypatch.setattr(dataplane.pipeline, "echo", broken)
    with rest_server(settings, dataplane) as url:
        reply = httpx.post(f"{url}/v1/detect", params={"model": "echo"}, content=face.data)
        assert reply.status_code == 500
        assert reply.json() == {"detail": "internal server error"}
        # uvicorn closes that connection after an unhandled error; the service serves on.
        assert httpx.post(f"{url}/v1/detect", content=face.data, timeout=30).json()["boxes"]
        counted = httpx.get(f"{url}/metrics").text
    assert 'model="echo",protocol="rest",status="internal_error"} 1.0' in counted
