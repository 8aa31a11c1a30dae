"""The in-flight cap: beyond FACEWIRE_MAX_INFLIGHT requests, a clean refusal at once
(503 with Retry-After, or RESOURCE_EXHAUSTED) instead of a queue without bound; the cap
and the count are in /metrics, and the held requests still finish."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import grpc
import httpx
import pytest

from facewire.dataplane import DataPlane
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.conftest import Fixture
from tests.servers import grpc_server, rest_server, wait_for

CAPPED = Settings(threads=1, max_inflight=1)


@contextmanager
def held_pipeline(plane: DataPlane) -> Iterator[threading.Event]:
    """Occupy the only pipeline thread until the yielded event is set, so that the next
    request waits in the queue: in flight, deterministically."""
    release = threading.Event()
    blocker: Future[bool] = plane._executor.submit(release.wait, 60)
    try:
        yield release
    finally:
        release.set()
        blocker.result(60)


def test_rest_refuses_beyond_the_cap_and_reports_it(face: Fixture) -> None:
    plane = DataPlane.from_settings(CAPPED, "rest")
    with rest_server(CAPPED, plane) as url, httpx.Client(base_url=url, timeout=60) as http:
        with held_pipeline(plane) as release:
            first: list[httpx.Response] = []
            holder = threading.Thread(
                target=lambda: first.append(http.post("/v1/detect", content=face.data))
            )
            holder.start()
            wait_for(lambda: plane.inflight == 1, what="the first request to be held")
            metrics = httpx.get(f"{url}/metrics").text
            assert "facewire_requests_in_flight 1.0" in metrics
            assert "facewire_requests_in_flight_limit 1.0" in metrics
            with httpx.Client(base_url=url, timeout=60) as other:
                refused = other.post("/v1/detect", content=face.data)
                echo = other.post("/v1/detect", params={"model": "echo"}, content=face.data)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "server busy" in refused.json()["detail"]
            assert echo.status_code == 200  # no pipeline work, nothing held: always answered
            release.set()
            holder.join(60)
        assert first[0].status_code == 200
        assert len(first[0].json()["boxes"]) == 1
        assert http.post("/v1/detect", content=face.data).status_code == 200
        text = http.get("/metrics").text
        assert (
            'facewire_requests_total{model="haar",protocol="rest",status="overloaded"} 1.0' in text
        )
        assert "facewire_requests_in_flight 0.0" in text


def test_grpc_refuses_beyond_the_cap(face: Fixture) -> None:
    plane = DataPlane.from_settings(CAPPED, "grpc")
    with grpc_server(CAPPED, plane) as target, grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        with held_pipeline(plane) as release:
            first = stub.Detect.future(pb.DetectRequest(image=face.data), timeout=60)
            wait_for(lambda: plane.inflight == 1, what="the first call to be held")
            with pytest.raises(grpc.RpcError) as refused:
                stub.Detect(pb.DetectRequest(image=face.data), timeout=60)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            assert "server busy" in refused.value.details()  # type: ignore[attr-defined]
            in_stream = list(stub.DetectStream(iter([pb.DetectRequest(image=face.data)])))
            assert in_stream[0].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            release.set()
            assert len(first.result(60).boxes) == 1
        assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=60).boxes) == 1
