"""The link's delay, jitter and loss where the kernel has no netem: Debian's ``vde2``
``wirefilter``, a userspace link emulator, between two TAP devices.

    dpipe vde_plug tap://HOST = wirefilter -d 25 -l 1 -M SOCKET = \\
          ip netns exec NS vde_plug tap://SERVICE

``dpipe`` joins the three programs' standard input and output in a ring: frames the
host's TAP device sends go through wirefilter (delayed, dropped) to the TAP device
inside the services' namespace, and back. Its values are per direction, so half the
round trip goes each way, and a loss applies whole to each direction (as netem's does
on each end of a veth pair). The management socket lets a run change them in place
(``Wirefilter.set``), so that a sweep of round trips keeps one link.

dpipe makes a process group of its own; it must not be started under ``setsid``. It
is stopped through its three children, by PID: it reaps them and exits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from client.network.profiles import Profile
from facewire.children import spawn
from facewire.children import stop as stop_process

#: The programs the engine needs (Debian: vde2 for wirefilter and dpipe; vdeplug for
#: vde_plug, which vde2 pulls in).
PROGRAMS = ("dpipe", "vde_plug", "wirefilter")
#: The management socket's name carries the owner's tag: a run killed outright leaves
#: processes the next run finds by it (``stale``).
SOCKET_PREFIX = "facewire-link-"
#: The TAP devices' names carry it too (``fwt<pid>``, ``fwu<pid>``).
HOST_TAP, SERVICE_TAP = "fwt", "fwu"
_TAG = re.compile(rf"(?:{SOCKET_PREFIX}|tap://(?:{HOST_TAP}|{SERVICE_TAP}))(\d+)")
PROMPT = b"$ "


class EmulatorError(RuntimeError):
    """wirefilter could not be started, or did not take a value."""


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None]


def delay_value(profile: Profile) -> str:
    """wirefilter's ``delay``: half the round trip each way, ± half the jitter
    (uniform), as ``tc_commands`` gives netem on each end."""
    value = f"{profile.rtt_ms / 2:g}"
    if profile.jitter_ms:
        value += f"+{profile.jitter_ms / 2:g}U"
    return value


def values(profile: Profile) -> dict[str, str]:
    """The management commands' values for ``profile`` (rates are tbf's, on the TAP
    devices, not wirefilter's)."""
    return {"delay": delay_value(profile), "loss": f"{profile.loss_pct:g}"}


def arguments(profile: Profile, management: Path) -> list[str]:
    """``wirefilter``'s command line for ``profile``."""
    given = values(profile)
    return ["wirefilter", "-d", given["delay"], "-l", given["loss"], "-M", str(management)]


class Wirefilter:
    """The ring of three programs for one link: the host's TAP device ``host_tap`` (in
    this namespace) and ``service_tap`` inside ``namespace``."""

    def __init__(self, profile: Profile, tag: str, host_tap: str, namespace: str,
                 service_tap: str) -> None:  # fmt: skip
        missing = missing_programs()
        if missing:
            raise EmulatorError(
                f"the wirefilter link engine needs {', '.join(missing)} "
                "(Debian: apt-get install vde2)"
            )
        self.folder = Path(tempfile.mkdtemp(prefix=f"{SOCKET_PREFIX}{tag}-"))
        self.management = self.folder / "wirefilter.sock"
        self.log = self.folder / "dpipe.log"
        self.argv = [
            "dpipe", "vde_plug", f"tap://{host_tap}",
            "=", *arguments(profile, self.management),
            "=", "ip", "netns", "exec", namespace, "vde_plug", f"tap://{service_tap}",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            # Not under setsid: dpipe makes its own process group (see above).
            self.popen = spawn(self.argv, stdout=log, stderr=log)
        self._host_tap, self._namespace, self._service_tap = host_tap, namespace, service_tap

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until both TAP devices exist and the management socket answers."""
        deadline = time.monotonic() + timeout
        while not (
            _device_exists(self._host_tap, None)
            and _device_exists(self._service_tap, self._namespace)
            and self.management.exists()
        ):
            if self.popen.poll() is not None:
                raise EmulatorError(f"dpipe exited with {self.popen.returncode}: {self.output}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"the wirefilter link was not up after {timeout:.0f}s: "
                                    f"{self.output}")  # fmt: skip
            time.sleep(0.02)  # polling other processes' devices

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace").strip() if self.log.exists() else ""

    def set(self, profile: Profile) -> None:
        """Change delay, jitter and loss in place (a sweep's next point)."""
        for name, value in values(profile).items():
            answer = self.command(f"{name} {value}")
            if "1000 Success" not in answer:
                raise EmulatorError(f"wirefilter refused '{name} {value}': {answer.strip()}")

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One management command; its answer (wirefilter ends each with a status line,
        ``1000 Success`` when it took it)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.management))
            _read_until_prompt(sock)  # the banner
            sock.sendall(line.encode() + b"\n")
            return _read_until_prompt(sock)

    def stop(self) -> None:
        """Each of dpipe's children by PID; dpipe reaps them and exits."""
        for pid in _children(self.popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stop_process(self.popen, 5.0)
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_until_prompt(sock: socket.socket) -> str:
    """Up to wirefilter's prompt (``VDEwf$ ``), which follows its banner and each answer."""
    data = b""
    while not data.endswith(PROMPT):
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return data.decode(errors="replace")


def _device_exists(name: str, namespace: str | None) -> bool:
    prefix = [] if namespace is None else ["ip", "netns", "exec", namespace]
    argv = [*prefix, "ip", "link", "show", name]
    done = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 (ip, our names)
    return done.returncode == 0


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except OSError:
        return []


def stale(alive: set[int] | None = None) -> list[int]:
    """Processes of wirefilter links whose owner is gone (killed with SIGKILL): their
    PIDs, found by the owner's PID in their command lines, killed."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        match = _TAG.search(command)
        if match is None or not command.startswith(("dpipe", "wirefilter", "vde_plug")):
            continue
        owner = int(match.group(1))
        if owner == os.getpid() or (alive is not None and owner in alive) or _running(owner):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
    return killed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def version() -> str:
    """vde2's wirefilter version, as Debian packages it (for the record)."""
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "vde-wirefilter"],  # noqa: S607
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip() or "unknown"
