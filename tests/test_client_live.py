"""Client transports and engine against real services on ephemeral ports."""

from __future__ import annotations

import contextlib
import csv
import re
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.engine import Engine
from client.processes import free_port
from client.sources import SampleSource
from client.transports import (
    PROTOCOLS,
    ProtocolName,
    RestTransport,
    Transport,
    TransportError,
    make_transport,
)
from facewire.settings import Settings
from tests.conftest import Fixture
from tests.servers import ServiceProcess, grpc_server, rest_server, wait_for


@pytest.fixture
def transports(rest_url: str, grpc_target: str) -> Iterator[dict[ProtocolName, Transport]]:
    made = {p: make_transport(p, rest_url, grpc_target) for p in PROTOCOLS}
    yield made
    for transport in made.values():
        transport.close()


def test_all_transports_agree_and_report_bytes(
    transports: dict[ProtocolName, Transport], face: Fixture
) -> None:
    replies = {
        p: t.detect(face.data, model="haar", save=False, frame_id="7")
        for p, t in transports.items()
    }
    boxes = {p: r.result.boxes for p, r in replies.items()}
    assert len(set(boxes.values())) == 1
    assert len(boxes["rest"]) == 1
    for reply in replies.values():
        assert reply.result.frame_id == "7"
        assert reply.latency_ms > reply.result.timings.total > 0
        assert reply.bytes_sent >= len(face.data)
        assert reply.bytes_received > 0
    assert replies["rest"].bytes_sent == len(face.data)  # the raw body
    assert replies["rest"].bytes_received > replies["grpc"].bytes_received  # JSON vs protobuf


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_rejections_carry_the_servers_message(
    transports: dict[ProtocolName, Transport], face: Fixture, protocol: ProtocolName
) -> None:
    transport = transports[protocol]
    with pytest.raises(TransportError) as caught:
        transport.detect(b"not an image", model="haar", save=False, frame_id="")
    assert caught.value.kind == "rejected"
    assert "not a supported image" in caught.value.message
    # The connection (or the stream) goes on serving.
    assert len(transport.detect(face.data, model="haar", save=False, frame_id="").result.boxes) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dead_port_is_unreachable_not_a_crash(protocol: ProtocolName, face: Fixture) -> None:
    port = free_port()
    transport = make_transport(protocol, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")
    try:
        with pytest.raises(TransportError) as caught:
            transport.detect(face.data, model="haar", save=False, frame_id="")
        assert caught.value.kind == "unreachable"
    finally:
        transport.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reconnects_by_itself_when_the_service_comes_back(
    tmp_path: Path, face: Fixture, protocol: ProtocolName
) -> None:
    port = free_port()
    module = "rest_service" if protocol == "rest" else "grpc_service"
    env = {
        "FACEWIRE_REST_PORT": str(port),
        "FACEWIRE_GRPC_PORT": str(port),
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
    }
    transport = make_transport(protocol, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")

    def answers() -> bool:
        try:
            transport.detect(face.data, model="haar", save=False, frame_id="")
        except TransportError:
            return False
        return True

    try:
        with ServiceProcess(module, env) as first:
            first.address()
            wait_for(answers, what="first answer")
            assert first.stop() == 0
        with pytest.raises(TransportError) as caught:
            transport.detect(face.data, model="haar", save=False, frame_id="")
        assert caught.value.kind in {"unreachable", "timeout"}
        with ServiceProcess(module, env) as second:
            second.address()
            wait_for(answers, what="an answer after the restart")  # same transport object
    finally:
        transport.close()


def test_rest_transport_replaces_a_connection_the_server_closed_while_idle(
    face: Fixture,
) -> None:
    with rest_server(Settings(keep_alive_s=0.2)) as url:
        transport = RestTransport(url)
        try:
            transport.detect(face.data, model="echo", save=False, frame_id="1")
            connection = transport._connection
            assert connection is not None
            assert connection.sock is not None
            sock = connection.sock
            # The server drops the idle connection after 0.2 s: the socket reads EOF.
            wait_for(lambda: select.select([sock], [], [], 0)[0], what="the server closing")
            reply = transport.detect(face.data, model="echo", save=False, frame_id="2")
            assert reply.result.frame_id == "2"
        finally:
            transport.close()


def test_engine_fans_the_same_frames_out_and_saves_only_when_asked(tmp_path: Path) -> None:
    settings = Settings(storage_dir=tmp_path, threads=2)
    with rest_server(settings) as url, grpc_server(settings) as target:
        engine = Engine(SampleSource(), lambda p: make_transport(p, url, target), mode="both")
        engine.start()
        try:
            rest, grpc_ = engine.workers["rest"], engine.workers["grpc"]
            wait_for(lambda: rest.stats.snapshot().count >= 3 and grpc_.stats.snapshot().count >= 3,
                     what="both protocols answering")  # fmt: skip
            for worker in (rest, grpc_):
                shown = worker.shown
                assert shown is not None
                assert len(shown.reply.result.boxes) == 2  # the sample's two faces
            assert engine.workers["grpc-stream"].stats.snapshot().count == 0  # not active
            assert not (tmp_path / "records.csv").exists()
            save_on = engine.toggle_save()
            wait_for(lambda: _rows(tmp_path) >= 6, what="saved rows")
            save_off = engine.toggle_save()
            engine.set_mode("stream")
            stream = engine.workers["grpc-stream"]
            wait_for(lambda: stream.stats.snapshot().count >= 2, what="the stream answering")
        finally:
            engine.stop()
    with open(tmp_path / "records.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"rest", "grpc"} <= {row["protocol"] for row in rows}
    # Exactly the frames captured while saving was on were stored, whichever protocol sent them.
    assert all(save_on <= int(row["frame_id"]) < save_off for row in rows), (save_on, save_off)
    assert len(list(tmp_path.glob("*.jpg"))) == len(rows)


def _rows(folder: Path) -> int:
    path = folder / "records.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_engine_with_one_dead_protocol_keeps_the_other_going(rest_url: str, face: Fixture) -> None:
    dead = f"127.0.0.1:{free_port()}"
    engine = Engine(SampleSource(), lambda p: make_transport(p, rest_url, dead), mode="both")
    engine.start()
    try:
        rest, grpc_ = engine.workers["rest"], engine.workers["grpc"]
        wait_for(lambda: grpc_.stats.snapshot().state == "unreachable", what="gRPC unreachable")
        wait_for(lambda: rest.stats.snapshot().count >= 10, what="REST answering regardless")
        assert grpc_.stats.snapshot().errors >= 1
        assert grpc_.stats.snapshot().last_error
    finally:
        engine.stop()


def test_quitting_with_a_stalled_server_does_not_wait_for_timeouts(face: Fixture) -> None:
    """A server that accepts connections and never answers must not hold the quit up."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except TimeoutError:
                continue
            # Counted once the whole request has arrived, so the client is reading its
            # answer: closing a connection still sending fails at once, which is no test.
            connection.settimeout(5)
            with contextlib.suppress(OSError):
                if whole_request(connection):
                    accepted.append(connection)  # and never a reply
                    continue
            connection.close()

    def whole_request(connection: socket.socket) -> bool:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def connect(protocol: ProtocolName) -> Transport:
        if protocol == "rest":  # a timeout far beyond the test's: only closing can end it
            return RestTransport(url, token=None, timeout=3600)
        return make_transport(protocol, url, "127.0.0.1:1")

    engine = Engine(SampleSource(), connect, mode="rest")
    engine.start()
    try:
        wait_for(lambda: accepted, what="the client's request")
    finally:
        left_behind = engine.stop()
        stop.set()
        acceptor.join(5)
        for sock in accepted:
            sock.close()
        listener.close()
    # The request was outstanding with an hour to go: the worker ended only because
    # stop() closed its connection under it.
    assert left_behind == []
    assert not engine.workers["rest"].alive
    assert not engine.workers["grpc"].alive


def test_every_protocol_and_payload_form_finds_the_same_face(
    rest_url: str, grpc_target: str, face: Fixture
) -> None:
    """Each name makes its own transport, and all of them get the same answer: facewire's
    APIs, the Open Inference Protocol's, and REST's multipart and plain-JSON forms."""
    from client.transports import ALL_PROTOCOLS, PAYLOAD_FORMS

    answers = {}
    for protocol in (*ALL_PROTOCOLS, *PAYLOAD_FORMS):
        transport = make_transport(protocol, rest_url, grpc_target)
        try:
            assert transport.name == protocol
            reply = transport.detect(face.data, model="haar", save=False, frame_id="f")
        finally:
            transport.close()
        answers[protocol] = (reply.result.boxes, reply.result.crop)
        assert reply.bytes_sent >= len(face.data)
    assert len(set(answers.values())) == 1, answers
    with pytest.raises(ValueError, match="unknown protocol"):
        make_transport("smoke-signals", rest_url, grpc_target)  # type: ignore[arg-type]
