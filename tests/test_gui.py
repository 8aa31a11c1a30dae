"""The GUI in a real window on a virtual screen, driven by real key presses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.gui import TITLE
from client.processes import free_port
from client.readiness import ready, rest_ready
from tests.gui_session import drive_gui
from tests.make import MakeProcess
from tests.servers import ServiceProcess, wait_for
from tests.xdisplay import Screen, virtual_display


@pytest.fixture(scope="module")
def screen() -> Iterator[Screen]:
    with virtual_display() as display:
        yield Screen(display)


def test_gui_modes_save_reset_quit(screen: Screen, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    env = {
        "FACEWIRE_REST_PORT": "0",
        "FACEWIRE_GRPC_PORT": "0",
        "FACEWIRE_STORAGE_DIR": str(storage),
    }
    granian = ServiceProcess("rest_service", {**env, "FACEWIRE_REST_SERVER": "granian"})
    with ServiceProcess("facewire.serve", env) as services, granian:  # as users run them
        url, target = services.both_addresses()
        h2_url = f"http://{granian.address()}"
        wait_for(lambda: ready(url, target) and rest_ready(h2_url), what="the services")
        drive_gui(screen, url, target, storage, tmp_path, h2_url)
        assert services.stop() == 0
        assert granian.stop() == 0


def test_both_hosts_down_the_window_stays_responsive(screen: Screen) -> None:
    port = free_port()
    dead = f"127.0.0.1:{port}"
    args = ("--source", "sample", "--mode", "both", "--rest-url", f"http://{dead}",
            "--grpc-target", dead)  # fmt: skip
    with MakeProcess("gui", screen.env, args) as gui:  # as a user runs it
        gui.wait_for_output("window open", timeout=60)
        gui.wait_for_output("rest: unreachable")
        gui.wait_for_output("grpc: unreachable")
        window = screen.window(TITLE)
        screen.key(window, "q")
        assert gui.process.wait(10) == 0, gui.output
    # Quitting waits at most QUIT_WAIT_S (1 s, the bound) and then leaves any
    # worker behind, saying so: here every worker ended within that wait.
    assert "quit without waiting" not in gui.output
    assert "window closed" in gui.output


def lab_env(tmp_path: Path) -> dict[str, str]:
    return {
        "FACEWIRE_REST_PORT": str(free_port()),
        "FACEWIRE_GRPC_PORT": str(free_port()),
        "FACEWIRE_STORAGE_DIR": str(tmp_path),
    }


def port_is_closed(port: str) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", int(port))) != 0


def test_make_run_with_a_display_opens_the_gui_and_stops_the_services(
    screen: Screen, tmp_path: Path
) -> None:
    env = {**lab_env(tmp_path), **screen.env}
    with ServiceProcess("client.lab", env) as lab:
        lab.wait_for_output("window open", timeout=60)
        lab.wait_for_output("rest: connected")
        screen.key(screen.window(TITLE), "q")
        assert lab.process.wait(30) == 0, lab.output
    assert "facewire REST stopped" in lab.output
    assert "facewire gRPC stopped" in lab.output
    assert port_is_closed(env["FACEWIRE_REST_PORT"])
    assert port_is_closed(env["FACEWIRE_GRPC_PORT"])


def test_make_run_without_a_display_runs_a_headless_comparison(tmp_path: Path) -> None:
    env = lab_env(tmp_path)
    with MakeProcess("run", env, unset=("DISPLAY", "WAYLAND_DISPLAY")) as lab:  # `make run`
        assert lab.process.wait(240) == 0, lab.output
    out = lab.output
    assert "no display" in out
    for protocol in ("rest", "grpc", "grpc-stream"):
        assert f"│ {protocol} " in out
    assert "facewire REST stopped" in out
    assert port_is_closed(env["FACEWIRE_REST_PORT"])
