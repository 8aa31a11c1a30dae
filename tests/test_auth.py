"""FACEWIRE_AUTH_TOKEN: every request but the health checks needs the token, on both
services and both APIs; the facewire client sends it."""

from __future__ import annotations

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.transports import ALL_PROTOCOLS, TransportError, make_transport
from facewire.oip.v2 import grpc_predict_v2_pb2 as oip_pb
from facewire.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2 as pb
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.conftest import Fixture
from tests.servers import grpc_server, rest_server

TOKEN = "correct-horse-battery-staple"
GUARDED = Settings(auth_token=TOKEN, threads=1)  # type: ignore[arg-type]


def test_rest_needs_the_token_except_for_health(face: Fixture) -> None:
    with rest_server(GUARDED) as url, httpx.Client(base_url=url, timeout=30) as http:
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
            assert http.get(path).status_code == 200, path
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = http.post("/v1/detect", content=face.data, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "FACEWIRE_AUTH_TOKEN" in refused.json()["detail"]
        assert http.get("/metrics").status_code == 401
        assert http.get("/openapi.json").status_code == 401
        v2 = http.post("/v2/models/echo/infer", json={"inputs": []})
        assert v2.status_code == 401
        assert "error" in v2.json()  # the protocol's own error form
        good = {"Authorization": f"Bearer {TOKEN}"}
        ok = http.post("/v1/detect", content=face.data, headers=good)
        assert ok.status_code == 200
        assert len(ok.json()["boxes"]) == 1
        assert http.get("/metrics", headers=good).status_code == 200


def test_grpc_needs_the_token_except_for_health(face: Fixture) -> None:
    with grpc_server(GUARDED) as target, grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.FaceDetectionStub(channel)
        oip = oip_grpc.GRPCInferenceServiceStub(channel)
        calls = (
            lambda md: stub.Detect(pb.DetectRequest(image=face.data), metadata=md),
            lambda md: list(
                stub.DetectStream(iter([pb.DetectRequest(image=face.data)]), metadata=md)
            ),
            lambda md: oip.ServerMetadata(oip_pb.ServerMetadataRequest(), metadata=md),
        )
        for call in calls:
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.RpcError) as refused:
                    call(metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            call((("authorization", f"Bearer {TOKEN}"),))  # the same call, with the token
        answer = stub.Detect(
            pb.DetectRequest(image=face.data), metadata=(("authorization", f"Bearer {TOKEN}"),)
        )
        assert len(answer.boxes) == 1


def test_the_client_transports_send_the_token(face: Fixture) -> None:
    with rest_server(GUARDED) as url, grpc_server(GUARDED) as target:
        for protocol in ALL_PROTOCOLS:
            without = make_transport(protocol, url, target, token="")
            with pytest.raises(TransportError) as refused:
                without.detect(face.data, model="echo", save=False, frame_id="")
            assert refused.value.kind == "rejected", protocol
            without.close()
            transport = make_transport(protocol, url, target, token=TOKEN)
            try:
                reply = transport.detect(face.data, model="haar", save=False, frame_id="a")
            finally:
                transport.close()
            assert len(reply.result.boxes) == 1, protocol
