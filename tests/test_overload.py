"""The in-flight cap: beyond FACEWIRE_MAX_INFLIGHT requests, a clean refusal at once
(503 with Retry-After, or RESOURCE_EXHAUSTED) instead of a queue without bound; the cap
and the count are in /metrics, and the held requests still finish."""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import grpc
import httpx
import pytest

from facewire.dataplane import DataPlane
from facewire.oip.v2 import grpc_predict_v2_pb2 as oip_pb
from facewire.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
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
            # echo takes the same path as the pipeline's models, cap included.
            assert echo.status_code == 503
            assert "server busy" in echo.json()["detail"]
            release.set()
            holder.join(60)
        assert first[0].status_code == 200
        assert len(first[0].json()["boxes"]) == 1
        assert http.post("/v1/detect", content=face.data).status_code == 200
        text = http.get("/metrics").text
        for model in ("haar", "echo"):
            overloaded = f'{{model="{model}",protocol="rest",status="overloaded"}} 1.0'
            assert f"facewire_requests_total{overloaded}" in text
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
            with pytest.raises(grpc.RpcError) as refused_echo:
                stub.Detect(pb.DetectRequest(image=face.data, model="echo"), timeout=60)
            assert refused_echo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            in_stream = list(stub.DetectStream(iter([pb.DetectRequest(image=face.data)])))
            assert in_stream[0].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            release.set()
            assert len(first.result(60).boxes) == 1
        assert len(stub.Detect(pb.DetectRequest(image=face.data), timeout=60).boxes) == 1


def test_echo_waits_for_a_pipeline_thread_like_every_model(face: Fixture) -> None:
    """echo differs from haar only by the pipeline's work: it is held in the queue while
    the pipeline thread is busy, counted in flight, and reports its wait."""
    settings = Settings(threads=1, max_inflight=2)
    plane = DataPlane.from_settings(settings, "rest")
    with rest_server(settings, plane) as url, httpx.Client(base_url=url, timeout=60) as http:
        with held_pipeline(plane) as release:
            answers: list[httpx.Response] = []
            sender = threading.Thread(target=lambda: answers.append(
                http.post("/v1/detect", params={"model": "echo"}, content=face.data)))  # fmt: skip
            sender.start()
            wait_for(lambda: plane.inflight == 1, what="the echo request to be held")
            assert answers == []  # not answered inline
            release.set()
            sender.join(60)
        assert answers[0].status_code == 200
        body = answers[0].json()
        assert body["model"] == "echo"
        assert body["boxes"] == []
        assert body["timings_ms"]["total"] == 0
        assert body["timings_ms"]["queue"] > 0  # it waited for the held thread
        assert plane.inflight == 0


def test_grpc_caps_open_streams_across_both_stream_methods(face: Fixture) -> None:
    settings = Settings(threads=1, max_streams=2)
    with grpc_server(settings) as target, grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        oip = oip_grpc.GRPCInferenceServiceStub(channel)
        held: list[tuple[queue.SimpleQueue[object], Iterator[object]]] = []
        for _ in range(2):  # fill both slots, each stream proven open by one answer
            outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
            replies = stub.DetectStream(iter(outbox.get, None))
            outbox.put(pb.DetectRequest(image=face.data, model="echo"))
            next(replies)
            held.append((outbox, replies))
        infer = oip_pb.ModelInferRequest(model_name="echo")
        infer.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
        infer.raw_input_contents.append(struct.pack("<I", 4) + b"\xff\xd8\xff\xe0")
        for extra in (
            lambda: list(stub.DetectStream(iter([pb.DetectRequest(image=face.data)]))),
            lambda: list(oip.ModelStreamInfer(iter([infer]))),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                extra()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            assert "2 streams already open" in refused.value.details()  # type: ignore[attr-defined]
        assert len(stub.Detect(pb.DetectRequest(image=face.data)).boxes) == 1  # unary still served
        outbox, replies = held.pop()
        outbox.put(None)  # close one stream: its slot frees
        assert list(replies) == []
        answers = list(oip.ModelStreamInfer(iter([infer])))
        assert answers[0].infer_response.model_name == "echo"
        for outbox, replies in held:
            outbox.put(None)
            list(replies)


def test_a_stream_cancelled_mid_flight_frees_its_request_and_slot(face: Fixture) -> None:
    settings = Settings(threads=1, max_inflight=1, max_streams=1)
    plane = DataPlane.from_settings(settings, "grpc")
    with grpc_server(settings, plane) as target, grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FaceDetectionStub(channel)
        with held_pipeline(plane) as release:
            outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
            call = stub.DetectStream(iter(outbox.get, None))
            outbox.put(pb.DetectRequest(image=face.data))
            wait_for(lambda: plane.inflight == 1, what="the frame to be held")
            call.cancel()  # the client gives up mid-flight
            wait_for(lambda: plane.inflight == 0, what="the cancelled frame to be let go")
            release.set()
        # Its stream slot and its in-flight slot are both free again.
        answers = list(stub.DetectStream(iter([pb.DetectRequest(image=face.data)])))
        assert len(answers[0].boxes) == 1
        assert len(stub.Detect(pb.DetectRequest(image=face.data)).boxes) == 1
