"""REST over HTTP/2: the service run on Granian (FACEWIRE_REST_SERVER=granian,
rest_service/granian_server.py), as users start it, on an ephemeral port. HTTP/2 is
checked frame by frame (h2's events on a raw socket), ALPN over TLS, the limits Granian
is given, the hostile corpus over one HTTP/2 connection, and the client's ``rest-h2``."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest

from client.bench.servers import self_signed_certificate
from client.readiness import rest_ready
from client.transports import TransportError, make_transport
from tests.cases import BadCase, assert_clean_message, bad_case_ids, bad_cases
from tests.conftest import Fixture
from tests.servers import ServiceProcess, wait_for

#: Not the default (100), so that the SETTINGS frame shows the service's own value.
MAX_STREAMS = 7


def granian_service(tmp: Path, **extra: str) -> ServiceProcess:
    env = {"FACEWIRE_REST_SERVER": "granian", "FACEWIRE_REST_PORT": "0",
           "FACEWIRE_STORAGE_DIR": str(tmp / "storage"),
           "FACEWIRE_HTTP2_MAX_CONCURRENT_STREAMS": str(MAX_STREAMS), **extra}  # fmt: skip
    return ServiceProcess("rest_service", env)


@pytest.fixture(scope="module")
def granian_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = granian_service(tmp_path_factory.mktemp("granian"))
    with service:
        url = f"http://{service.address()}"
        wait_for(lambda: rest_ready(url), what="the REST service on Granian")
        yield url
        assert service.stop() == 0  # drained, exit 0


def h2_post(
    sock: socket.socket, path: str, body: bytes
) -> tuple[dict[str, str], bytes, list[h2.events.Event]]:
    """One POST over a fresh HTTP/2 connection on ``sock`` (h2's state machine, our
    socket): the answer's headers and body, and every event the server's frames made."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()  # the preface: HTTP/2 with prior knowledge
    stream = connection.get_next_available_stream_id()
    connection.send_headers(stream, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                     (":authority", "facewire"),
                                     ("content-type", "image/jpeg")])  # fmt: skip
    headers: dict[str, str] = {}
    answer, sent = b"", 0
    seen: list[h2.events.Event] = []

    def receive() -> None:
        nonlocal answer, headers
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        for event in connection.receive_data(data):
            seen.append(event)
            if isinstance(event, h2.events.ResponseReceived):
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h2.events.DataReceived):
                answer += event.data
                connection.acknowledge_received_data(event.flow_controlled_length, stream)
        sock.sendall(connection.data_to_send())

    while sent < len(body):  # as flow control allows: the server's WINDOW_UPDATEs
        room = min(connection.local_flow_control_window(stream),
                   connection.max_outbound_frame_size, len(body) - sent)  # fmt: skip
        if room == 0:
            receive()
            continue
        connection.send_data(stream, body[sent : sent + room], end_stream=sent + room == len(body))
        sent += room
        sock.sendall(connection.data_to_send())
    while not any(isinstance(e, h2.events.StreamEnded) for e in seen):
        receive()
    return headers, answer, seen


def test_http2_is_spoken_frame_by_frame(granian_url: str, face: Fixture) -> None:
    host, port = granian_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        headers, body, events = h2_post(sock, "/v1/detect?model=haar", face.data)
    settings = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    announced = settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
    assert announced.new_value == MAX_STREAMS  # the service's setting, in its SETTINGS frame
    assert headers[":status"] == "200"
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert len(answer["boxes"]) == len(face.faces)


def test_one_port_answers_http1_http2_and_the_websocket_alike(
    granian_url: str, face: Fixture
) -> None:
    boxes = {}
    for protocol in ("rest", "rest-h2", "rest-h2-protobuf", "rest-ws"):
        transport = make_transport(protocol, granian_url, "127.0.0.1:1", token="")
        try:
            boxes[protocol] = transport.detect(face.data, model="haar", save=False,
                                               frame_id="one-port").result.boxes  # fmt: skip
        finally:
            transport.close()
    assert boxes["rest"]
    assert len(set(boxes.values())) == 1, boxes


def test_rest_h2_to_a_server_without_http2_fails_clearly(rest_url: str, face: Fixture) -> None:
    transport = make_transport("rest-h2", rest_url, "127.0.0.1:1", token="")  # uvicorn
    try:
        with pytest.raises(TransportError) as failure:
            transport.detect(face.data, model="echo", save=False, frame_id="")
    finally:
        transport.close()
    assert failure.value.kind == "unreachable"  # uvicorn drops it at the preface
    assert "does the server speak HTTP/2? FACEWIRE_REST_SERVER=granian" in str(failure.value)


@pytest.fixture(scope="module")
def h2_client(granian_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=granian_url, http1=False, http2=True, timeout=30) as client:
        yield client


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("socket").getsockname()[1])


@pytest.mark.parametrize("case", bad_cases(), ids=bad_case_ids())
def test_bad_input_over_http2_gets_a_clear_error_and_the_connection_serves_on(
    h2_client: httpx.Client, case: BadCase, face: Fixture
) -> None:
    params = {"model": case.model, "save": str(case.save).lower(), "frame_id": case.frame_id}
    bad = h2_client.post("/v1/detect", params=params, content=case.image)
    assert bad.http_version == "HTTP/2"
    assert bad.status_code == (400 if case.kind == "invalid" else 413), bad.text[:300]
    detail = bad.json()["detail"]
    assert case.says in detail
    assert_clean_message(detail)
    good = h2_client.post("/v1/detect", params={"model": "echo"}, content=face.data)
    assert good.status_code == 200
    assert _local_port(good) == _local_port(bad)  # the same connection served on


def test_tls_offers_http2_and_http1_by_alpn(tmp_path: Path, face: Fixture) -> None:
    cert, key = self_signed_certificate(tmp_path)
    tls = {"FACEWIRE_TLS_CERT_FILE": str(cert), "FACEWIRE_TLS_KEY_FILE": str(key)}
    service = granian_service(tmp_path, **tls)
    with service:
        host, port = service.address().split(":")
        url = f"https://{host}:{port}"
        wait_for(lambda: _tls_answers(url, cert), what="the REST service on Granian, TLS")
        for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
            context = ssl.create_default_context(cafile=str(cert))
            context.set_alpn_protocols(offered)
            with (socket.create_connection((host, int(port)), timeout=10) as raw,
                  context.wrap_socket(raw, server_hostname="localhost") as sock):  # fmt: skip
                assert sock.selected_alpn_protocol() == chosen
        transport = make_transport("rest-h2", url, "127.0.0.1:1", token="", ca_file=cert)
        try:
            reply = transport.detect(face.data, model="haar", save=False, frame_id="tls")
        finally:
            transport.close()
        assert len(reply.result.boxes) == len(face.faces)
        assert service.stop() == 0


def _tls_answers(url: str, cert: Path) -> bool:
    try:
        verify = ssl.create_default_context(cafile=str(cert))
        return httpx.get(f"{url}/readyz", verify=verify, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
