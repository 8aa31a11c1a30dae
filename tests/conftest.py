from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
import uvicorn

from client import bench
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.servers import grpc_server, rest_server

FIXTURES = bench.FIXTURES

# --- the fast tier: `pytest -m unit` (make test-fast) --------------------------------
#
# A module of units only says `pytestmark = pytest.mark.unit`; a mixed module marks its
# units one by one. Unmarked tests stay out of the tier, so a new test that starts a
# server cannot slow it down by default. The marks are held to their word: a unit may not
# use the server fixtures, and a run of units only cannot start a server at all.

#: Fixtures that start a service (every fixture built on them needs them too).
SERVER_FIXTURES = frozenset({"rest_url", "grpc_target"})
#: Programs a unit never runs: servers, load generators, browsers, network set-up.
SERVER_PROGRAMS = frozenset({"nginx", "chromium", "h2load", "Xvfb", "ip", "tc", "unshare"})
#: ``python -m`` modules that are servers or start them.
SERVER_MODULES = ("rest_service", "grpc_service", "facewire.serve", "client")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wrong = [
        item.nodeid
        for item in items
        if item.get_closest_marker("unit") and SERVER_FIXTURES & set(item.fixturenames)
    ]
    if wrong:
        raise pytest.UsageError(f"marked unit but uses a server fixture: {wrong}")


def _refuse(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} in a run of unit tests: a unit starts no server")

    return refuse


def _starts_a_server(argv: object) -> bool:
    if not isinstance(argv, list | tuple) or not argv:
        return False  # a shell command line: not looked into
    words = [str(word) for word in argv]
    if Path(words[0]).name in SERVER_PROGRAMS:
        return True
    if "-m" in words[:-1]:
        module = words[words.index("-m") + 1]
        return any(module == m or module.startswith(f"{m}.") for m in SERVER_MODULES)
    return False


def pytest_collection_finish(session: pytest.Session) -> None:
    """When every test selected is a unit, no server can start: listening sockets, gRPC
    servers and server programs raise instead (undone when the session ends)."""
    if not session.items or not all(i.get_closest_marker("unit") for i in session.items):
        return
    patch = pytest.MonkeyPatch()
    session.config.add_cleanup(patch.undo)
    patch.setattr(socket.socket, "listen", _refuse("a listening socket"))
    patch.setattr(uvicorn.Server, "startup", _refuse("a uvicorn server"))  # uvloop's listen is C
    patch.setattr(grpc, "server", _refuse("a gRPC server"))
    patch.setattr(grpc.aio, "server", _refuse("a gRPC server"))
    popen = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if _starts_a_server(args):
            raise AssertionError(f"{args!r} in a run of unit tests: a unit starts no server")
        popen(self, args, *rest, **kwargs)

    patch.setattr(subprocess.Popen, "__init__", guarded)


@dataclass(frozen=True)
class Fixture:
    name: str
    data: bytes
    faces: list[dict[str, int]]


def _fixture(name: str) -> Fixture:
    manifest = json.loads((FIXTURES / "fixtures.json").read_text())
    return Fixture(name, (FIXTURES / name).read_bytes(), manifest[name]["faces_in_720_frame"])


@pytest.fixture(scope="session")
def face() -> Fixture:
    return _fixture("face_1280x720.jpg")


@pytest.fixture(scope="session")
def noface() -> Fixture:
    return _fixture("noface_1280x720.jpg")


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def settings(storage_root: Path) -> Settings:
    """Defaults, but a private storage folder and two pipeline threads."""
    return Settings(storage_dir=storage_root, threads=2)


@pytest.fixture(scope="session")
def rest_url(settings: Settings) -> Iterator[str]:
    with rest_server(settings) as url:
        yield url


@pytest.fixture
def conn(rest_url: str) -> Iterator[HTTPConnection]:
    """A raw HTTP/1.1 connection to the session's REST service: what a test needs to see
    that the server keeps (or closes) the very same connection."""
    parts = urlsplit(rest_url)
    connection = HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def grpc_target(settings: Settings) -> Iterator[str]:
    with grpc_server(settings) as target:
        yield target


@pytest.fixture
def http(rest_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_url, timeout=30) as client:
        yield client


@pytest.fixture
def channel(grpc_target: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(grpc_target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.FaceDetectionStub:
    return pb_grpc.FaceDetectionStub(channel)


def assert_face_near(box: dict[str, int], expected: dict[str, int]) -> None:
    """Haar's scale grid moves the box edges a little; the centre and size stay close."""
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    want = (expected["x"] + expected["width"] / 2, expected["y"] + expected["height"] / 2)
    assert abs(centre[0] - want[0]) <= 6, (box, expected)
    assert abs(centre[1] - want[1]) <= 6, (box, expected)
    assert abs(box["width"] - expected["width"]) <= 0.15 * expected["width"], (box, expected)
    assert box["width"] == box["height"]
