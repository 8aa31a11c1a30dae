"""Protocol abuse against the REST service: trickled headers and bodies, huge headers,
and a client that vanishes mid-upload. Each gets a clear answer within its time limit,
or is dropped, and the service keeps serving; nothing is logged as a server error."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from facewire.settings import Settings
from tests.conftest import Fixture
from tests.servers import rest_server, wait_for

QUICK = Settings(threads=1, header_timeout_s=0.5, body_timeout_s=0.5, max_header_bytes=8192)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with rest_server(QUICK) as base:
        yield base


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (it must, within the timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_trickled_headers_get_408_and_the_connection_closes(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = read_answer(sock)  # nothing more is sent: the headers never finish
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request headers not complete in 0.5 s" in answer
    assert time.monotonic() - started < 5
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_trickled_body_gets_408_and_the_connection_closes(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        sock.sendall(b"\xff\xd8\xff" + bytes(100))  # then nothing
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body not complete in 0.5 s" in answer
    assert b"connection: close" in answer.lower()
    assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 20_000 + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(2000)),
    ],
    ids=["one-huge-header", "many-headers"],
)
def test_headers_over_the_limit_get_431(url: str, headers: bytes) -> None:
    with connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"request headers over 8192 bytes" in answer
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_client_gone_mid_upload_is_no_server_error(
    url: str, face: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        with connect(url) as sock:
            sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
            sock.sendall(face.data[:50_000])
        # The disconnect reaches the app; it is counted, not logged as an error.
        wait_for(
            lambda: 'status="client_gone"' in httpx.get(f"{url}/metrics").text,
            what="the disconnect to be counted",
        )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    reply = httpx.post(f"{url}/v1/detect", content=face.data, timeout=30)
    assert len(reply.json()["boxes"]) == 1


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(url: str) -> None:
    """uvicorn alone keeps such a connection for ever: thousands of them exhaust the
    process's file descriptors."""
    with connect(url) as sock:
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_connections_over_the_cap_are_closed_and_established_ones_served_on() -> None:
    with rest_server(QUICK.model_copy(update={"max_connections": 3})) as base:
        with httpx.Client(base_url=base) as established:
            assert established.get("/healthz").status_code == 200  # one of the three
            held = [connect(base) for _ in range(2)]  # the other two
            try:
                with connect(base) as extra:
                    assert read_answer(extra) == b""  # closed unanswered
                assert established.get("/healthz").status_code == 200
            finally:
                for sock in held:
                    sock.close()
        # The held ones gone, new connections are taken again.
        wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, what="a new connection")


def test_a_few_pipelined_requests_are_answered_in_order(url: str) -> None:
    with connect(url) as sock:
        last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 4 + last)
        answer = read_answer(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 5


def test_a_pipelined_flood_closes_the_connection(url: str) -> None:
    """uvicorn alone queues every pipelined request: thousands in one write cost
    megabytes and seconds. Past FACEWIRE_MAX_PIPELINED_REQUESTS the connection ends."""
    with connect(url) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 5000)
            answer = read_answer(sock)
        except ConnectionResetError:  # closed with our requests unread: a reset
            answer = b""
    assert answer.count(b"HTTP/1.1 200 OK") < 100  # the queue's worth, not 5000
    assert httpx.get(f"{url}/healthz").status_code == 200
