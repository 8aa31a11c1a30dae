"""Properties of the project itself: generated code, package boundaries, settings."""

from __future__ import annotations

import contextlib
import filecmp
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facewire.settings import Settings
from tests.make import make
from tests.servers import ROOT

pytestmark = pytest.mark.unit

GENERATED = (ROOT / "facewire" / "v1", ROOT / "facewire" / "oip" / "v2")


def test_generated_protobuf_modules_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*"))
    committed = sorted(p.relative_to(ROOT) for d in GENERATED for p in d.glob("*_pb2*"))
    assert fresh == committed, "run `make proto` and commit the result"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"stale generated files, run `make proto`: {stale}"


def test_core_imports_neither_fastapi_nor_grpc() -> None:
    core = [
        f"facewire.{p.stem}"
        for p in (ROOT / "facewire").glob("*.py")
        if p.stem not in {"__init__", "__main__"}
    ]
    script = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in core)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'grpc', "
        "'starlette', 'uvicorn'})\nprint(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_only_one_opencv_wheel_is_installed() -> None:
    installed = set()
    for name in ("opencv-python", "opencv-python-headless"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            installed.add((name, importlib.metadata.version(name)))
    assert len(installed) == 1, installed
    (_, version) = installed.pop()
    assert version.startswith("4."), "OpenCV 5 wheels lack CascadeClassifier and the cascades"


def test_settings_come_from_facewire_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEWIRE_REST_PORT", "9001")
    monkeypatch.setenv("FACEWIRE_MAX_UPLOAD_BYTES", "1024")
    monkeypatch.setenv("FACEWIRE_SCALE_FACTOR", "1.2")
    monkeypatch.setenv("FACEWIRE_LOG_LEVEL", "debug")
    monkeypatch.setenv("REST_PORT", "1")  # unprefixed variables are not ours
    settings = Settings()
    assert (settings.rest_port, settings.max_upload_bytes) == (9001, 1024)
    assert (settings.scale_factor, settings.log_level) == (1.2, "debug")
    assert settings.storage_dir_for("grpc") == Path("storage/grpc")


def test_services_listen_on_loopback_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FACEWIRE_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    # Only inside a container (the Dockerfile), where the published ports decide.
    assert (ROOT / "Dockerfile").read_text().count("FACEWIRE_HOST=0.0.0.0") == 1


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("FACEWIRE_SCALE_FACTOR", "1.0")  # would never terminate the scan
    with pytest.raises(ValidationError):
        Settings()


def test_make_fuzz_runs_briefly_without_a_crash(tmp_path: Path) -> None:
    """`make fuzz` in small: atheris drives the decode path; any exception other than a
    FacewireError, or resident memory over 1 GiB, fails the run; and the memory it
    ends with is the memory it started with (libFuzzer reports both). A fixed seed, so
    that a failure here can be replayed; `make fuzz` explores with fresh ones.

    libFuzzer reads its memory as the process's peak resident size (ru_maxrss), which
    Linux carries over from the parent through fork and exec: started from pytest
    itself, the fuzzer would begin at pytest's own peak (over 1 GiB by now); make, in
    between, forks it from a small process instead."""
    fuzzer = ["-runs=20000", "-seed=1", "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/"]
    done = make("fuzz", fuzzer, timeout=300)  # make forks the fuzzer: a small parent
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 20000 runs" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no crashing input was written
    started = re.search(r"INITED .* rss: (\d+)Mb", done.stderr)
    ended = re.search(r"DONE .* rss: (\d+)Mb", done.stderr)
    assert started is not None
    assert ended is not None
    assert int(ended.group(1)) <= int(started.group(1)) + 32  # flat: no growth per input
