from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from client import bench
from facewire.settings import Settings
from facewire.v1 import face_detection_pb2_grpc as pb_grpc
from tests.servers import grpc_server, rest_server

FIXTURES = bench.FIXTURES


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
