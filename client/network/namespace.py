"""A network between the client and the services: the services in a network namespace
of their own, joined to this one by a veth pair, with a profile's qdiscs on both ends.

    with ServiceNetwork(profile) as net:      # root only; removed on exit, Ctrl-C or SIGTERM
        Child("rest_service", prefix=net.prefix, env={"FACEWIRE_HOST": net.service_ip})

Addresses are link-local (169.254.0.0/16), a /30 per run, so nothing outside this
machine is ever addressed. The namespace and the pair are named after this process
(``fw<pid>``, ``fwh<pid>``, ``fwn<pid>``), so several runs can share a machine, and a
run that was killed outright leaves names that the next run recognises and removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from types import FrameType, TracebackType

from client.network.profiles import Profile, ProfileError, tc_commands

NETNS_PREFIX = "fw"
_NAME = re.compile(rf"^{NETNS_PREFIX}(\d+)\b")


class NetworkError(RuntimeError):
    """The link could not be made (not root, no ``ip`` or ``tc``, a command failed)."""


def run(command: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """One ``ip`` or ``tc`` command; with ``check``, NetworkError with its message if it
    fails (without, the caller reads the outcome: a clean-up, a probe)."""
    # Fixed programs (ip, tc); arguments are this module's own names, addresses, numbers.
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)  # noqa: S603
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done


def require_root() -> None:
    if os.geteuid() != 0:
        raise NetworkError(
            "network profiles need root (a network namespace, a veth pair and tc qdiscs): "
            "run as root, e.g. sudo make bench ARGS='--network lan'"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise NetworkError(f"no {tool} command (Debian: apt-get install iproute2)")


def remove_stale() -> list[str]:
    """Namespaces of runs whose process is gone (killed with SIGKILL, say): removed,
    with their veth pairs (a pair goes with its namespace end). Returns their names."""
    listed = run(["ip", "netns", "list"], check=False)
    removed = []
    for line in listed.stdout.splitlines():
        match = _NAME.match(line)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            name = line.split()[0]
            with contextlib.suppress(NetworkError):
                run(["ip", "netns", "del", name])
                removed.append(name)
        except PermissionError:
            continue  # alive, someone else's
    return removed


class ServiceNetwork:
    """The namespace, the pair, addresses and qdiscs for one ``profile``."""

    def __init__(self, profile: Profile, index: int = 0) -> None:
        """``index`` tells apart the links of one process (each its own namespace)."""
        pid = os.getpid()
        tag = f"{pid}" if index == 0 else f"{pid}x{index}"
        self.profile = profile
        self.namespace = f"{NETNS_PREFIX}{tag}"
        self.host_device = f"fwh{tag}"[:15]
        self.service_device = f"fwn{tag}"[:15]
        subnet = 169, 254, 100 + (pid + 37 * index) % 100, ((pid // 100 + index) % 63) * 4
        self.host_ip = ".".join(map(str, (*subnet[:3], subnet[3] + 1)))
        self.service_ip = ".".join(map(str, (*subnet[:3], subnet[3] + 2)))
        self._previous_sigterm: object = None
        self._made = False

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return _exec(self.namespace)

    def commands(self) -> list[list[str]]:
        """Every command that makes the link, in order (what ``__enter__`` runs)."""
        inside = self.prefix
        return [
            ["ip", "netns", "add", self.namespace],
            ["ip", "link", "add", self.host_device, "type", "veth", "peer", "name",
             self.service_device],
            ["ip", "link", "set", self.service_device, "netns", self.namespace],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_device],
            ["ip", "link", "set", self.host_device, "up"],
            [*inside, "ip", "addr", "add", f"{self.service_ip}/30", "dev", self.service_device],
            [*inside, "ip", "link", "set", self.service_device, "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
            *tc_commands(self.profile, self.host_device, "up"),
            *([*inside, *c] for c in tc_commands(self.profile, self.service_device, "down")),
        ]  # fmt: skip

    def __enter__(self) -> ServiceNetwork:
        require_root()
        remove_stale()
        if threading_main():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._made = True
        try:
            for command in self.commands():
                try:
                    run(command)
                except NetworkError as error:
                    if "netem" in command and "unknown" in str(error).lower():
                        raise ProfileError(_no_netem(self.profile)) from None
                    raise
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove the namespace (its end of the pair, and so the pair, goes with it);
        the host end too, in case the namespace was never made."""
        if self._made:
            run(["ip", "netns", "del", self.namespace], check=False)
            run(["ip", "link", "del", self.host_device], check=False)
            self._made = False
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)  # type: ignore[arg-type]
            self._previous_sigterm = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so that every ``finally`` (and this link's removal)
    runs."""
    raise SystemExit(128 + signum)


def _no_netem(profile: Profile) -> str:
    return (
        f"profile {profile.name!r} needs delay, jitter or loss, and this kernel has no netem "
        "(the sch_netem qdisc): only bandwidth can be shaped here; use --rate-only for its "
        "rates alone, or a rate-only profile (lan, fast-ethernet)"
    )


def netem_available() -> bool:
    """Whether this kernel has netem: tried on a throwaway namespace's loopback."""
    probe = f"{NETNS_PREFIX}{os.getpid()}probe"
    try:
        run(["ip", "netns", "add", probe])
    except NetworkError:
        return False
    try:
        tried = run([*_exec(probe), "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                     "1ms"], check=False)  # fmt: skip
        return tried.returncode == 0
    finally:
        run(["ip", "netns", "del", probe], check=False)


def _exec(namespace: str) -> list[str]:
    return ["ip", "netns", "exec", namespace]


def preflight(profile: Profile) -> None:
    """Refuse at once, in one line, what ``service_network`` could not make: a shaped
    profile without root, or delay, jitter or loss without netem."""
    if not profile.shaped:
        return
    require_root()
    if profile.needs_netem and not netem_available():
        raise ProfileError(_no_netem(profile))


@contextlib.contextmanager
def service_network(profile: Profile) -> Iterator[ServiceNetwork | None]:
    """The link for ``profile``, or None (loopback) when it shapes nothing."""
    if not profile.shaped:
        yield None
        return
    with ServiceNetwork(profile) as network:
        yield network
