"""A network between the client and the services: the services in a network namespace
of their own, joined to this one by a link that a profile shapes.

    with ServiceNetwork(profile) as net:      # root only; removed on exit, Ctrl-C or SIGTERM
        Child("rest_service", prefix=net.prefix, env={"FACEWIRE_HOST": net.service_ip})

Two link engines make the delay, jitter and loss (``ENGINES``): ``netem``, the kernel's
qdisc on the ends of a veth pair, and ``wirefilter`` (vde2), a user-space emulator
between two TAP devices, for kernels without netem. Rates are tbf's on either. "auto"
takes netem where the kernel has it, wirefilter otherwise.

Addresses are link-local (169.254.0.0/16), a /30 per run, so nothing outside this
machine is ever addressed. The namespace and the devices are named after this process
(``fw<pid>``; veth ``fwh<pid>``/``fwn<pid>``; TAP ``fwt<pid>``/``fwu<pid>``), so several
runs can share a machine, and a run that was killed outright leaves names (and
wirefilter processes) that the next run recognises and removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import FrameType, TracebackType

from client.network import wirefilter
from client.network.profiles import Profile, ProfileError, tc_commands

NETNS_PREFIX = "fw"
#: The link engines a run can ask for (``--link-engine``), besides "auto".
ENGINES = ("netem", "wirefilter")
Engine = str
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
    wirefilter.stale()  # first: their TAP devices go with them
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


def choose_engine(requested: str, profile: Profile) -> Engine:
    """The engine for ``profile``: as asked, or for "auto", netem where the kernel has
    it (or where the profile needs no delay, jitter or loss: tbf alone), wirefilter
    otherwise."""
    if requested != "auto":
        if requested not in ENGINES:
            raise ProfileError(f"unknown link engine {requested!r}; known: auto, "
                               f"{', '.join(ENGINES)}")  # fmt: skip
        return requested
    if not profile.impaired or netem_available():
        return "netem"
    return "wirefilter"


class ServiceNetwork:
    """The namespace, the link, addresses and qdiscs for one ``profile``."""

    def __init__(
        self, profile: Profile, index: int = 0, engine: str = "auto", *, capped: bool = True
    ) -> None:
        """``index`` tells apart the links of one process (each its own namespace).
        ``capped``: on wirefilter, hold unshaped directions to what it carries
        (``client.network.limits``; off only to measure that)."""
        pid = os.getpid()
        tag = f"{pid}" if index == 0 else f"{pid}x{index}"
        self.profile = profile
        self.engine: Engine = choose_engine(engine, profile)
        self.namespace = f"{NETNS_PREFIX}{tag}"
        prefixes = ("fwh", "fwn") if self.engine == "netem" else (
            wirefilter.HOST_TAP, wirefilter.SERVICE_TAP)  # fmt: skip
        self.host_device = f"{prefixes[0]}{tag}"[:15]
        self.service_device = f"{prefixes[1]}{tag}"[:15]
        self._tag = tag
        self._capped = capped
        self._emulator: wirefilter.Wirefilter | None = None
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
        """Every ``ip`` and ``tc`` command that makes the link, in order (what
        ``__enter__`` runs; with wirefilter, its TAP devices exist before the
        addresses are added)."""
        return [*self._device_commands(), *self._address_commands(), *self.qdisc_commands()]

    def _device_commands(self) -> list[list[str]]:
        if self.engine == "wirefilter":
            return [["ip", "netns", "add", self.namespace]]
        return [
            ["ip", "netns", "add", self.namespace],
            ["ip", "link", "add", self.host_device, "type", "veth", "peer", "name",
             self.service_device],
            ["ip", "link", "set", self.service_device, "netns", self.namespace],
        ]  # fmt: skip

    def _address_commands(self) -> list[list[str]]:
        inside = self.prefix
        return [
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_device],
            ["ip", "link", "set", self.host_device, "up"],
            [*inside, "ip", "addr", "add", f"{self.service_ip}/30", "dev", self.service_device],
            [*inside, "ip", "link", "set", self.service_device, "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
        ]  # fmt: skip

    def qdisc_commands(self, profile: Profile | None = None) -> list[list[str]]:
        """The ``tc`` commands for ``profile`` (this link's own by default): netem and
        tbf, or with wirefilter, tbf alone."""
        profile = self._held(profile or self.profile)
        netem = self.engine == "netem"
        return [
            *tc_commands(profile, self.host_device, "up", with_netem=netem),
            *([*self.prefix, *c]
              for c in tc_commands(profile, self.service_device, "down", with_netem=netem)),
        ]  # fmt: skip

    def _held(self, profile: Profile) -> Profile:
        """``profile`` with its unshaped directions held to the engine's cap."""
        if not self._capped or self.engine != "wirefilter":
            return profile
        from client.network import limits

        cap = limits.cap_mbit(self.engine)
        return replace(profile, down_mbit=profile.down_mbit or cap, up_mbit=profile.up_mbit or cap)

    def describe_engine(self) -> dict[str, object]:
        """What shapes this link, for every result that was taken across it."""
        shaping = [" ".join(c[c.index("tc") :]) for c in self.qdisc_commands()]
        record: dict[str, object] = {"engine": self.engine, "tc": shaping}
        if self._emulator is not None:
            record["wirefilter"] = " ".join(
                wirefilter.arguments(self.profile, self._emulator.management)
            )
            record["wirefilter_version"] = wirefilter.version()
        return record

    def __enter__(self) -> ServiceNetwork:
        require_root()
        remove_stale()
        if threading_main():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._made = True
        try:
            for command in self._device_commands():
                run(command)
            if self.engine == "wirefilter":
                self._emulator = wirefilter.Wirefilter(self.profile, self._tag,
                                                       self.host_device, self.namespace,
                                                       self.service_device)  # fmt: skip
                self._emulator.wait_ready()
            for command in [*self._address_commands(), *self.qdisc_commands()]:
                self._run_qdisc(command)
            self._pin_neighbours()
        except BaseException:
            self.close()
            raise
        return self

    def _run_qdisc(self, command: list[str]) -> None:
        try:
            run(command)
        except NetworkError as error:
            if "netem" in command and "unknown" in str(error).lower():
                raise ProfileError(_no_netem(self.profile)) from None
            raise

    def _pin_neighbours(self) -> None:
        """Each end's hardware address written into the other's neighbour table, so no
        ARP exchange (a round trip of its own) ever lands inside a measurement."""
        inside = self.prefix
        host_mac = run(["cat", f"/sys/class/net/{self.host_device}/address"]).stdout.strip()
        service_mac = run([*inside, "cat", f"/sys/class/net/{self.service_device}/address"]
                          ).stdout.strip()  # fmt: skip
        run(["ip", "neigh", "replace", self.service_ip, "lladdr", service_mac, "dev",
             self.host_device, "nud", "permanent"])  # fmt: skip
        run([*inside, "ip", "neigh", "replace", self.host_ip, "lladdr", host_mac, "dev",
             self.service_device, "nud", "permanent"])  # fmt: skip

    def reshape(self, profile: Profile) -> None:
        """The same link with another profile's values (a sweep's next point): the
        qdiscs replaced, wirefilter's values changed in place; connections stay up."""
        if self.engine == "netem" and profile.impaired and not netem_available():
            raise ProfileError(_no_netem(profile))
        for device, inside in ((self.host_device, []), (self.service_device, self.prefix)):
            run([*inside, "tc", "qdisc", "del", "dev", device, "root"], check=False)
        for command in self.qdisc_commands(profile):
            self._run_qdisc(command)
        if self._emulator is not None:
            self._emulator.set(profile)
        self.profile = profile

    def close(self) -> None:
        """Remove the namespace (its end of the link, and so a veth pair, goes with
        it), stop wirefilter (its TAP devices go with it), and the host end in case
        the namespace was never made."""
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None
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
        "(the sch_netem qdisc): use --link-engine wirefilter (or auto), or --rate-only for "
        "its rates alone"
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


def preflight(profile: Profile, engine: str = "auto") -> Engine | None:
    """Refuse at once, in one line, what ``service_network`` could not make: a shaped
    profile without root, delay, jitter or loss with netem asked for and none in this
    kernel, wirefilter asked for and not installed, or a profile beyond what the engine
    carries on this machine (``client.network.limits``). The engine it will use."""
    if not profile.shaped:
        return None
    require_root()
    chosen = choose_engine(engine, profile)
    if chosen == "netem" and profile.impaired and not netem_available():
        raise ProfileError(_no_netem(profile))
    if chosen == "wirefilter":
        missing = wirefilter.missing_programs()
        if missing:
            raise NetworkError(f"the wirefilter link engine needs {', '.join(missing)} "
                               "(Debian: apt-get install vde2)")  # fmt: skip
        from client.network import limits

        limits.refuse_beyond(profile, chosen)
    return chosen


@contextlib.contextmanager
def service_network(profile: Profile, engine: str = "auto") -> Iterator[ServiceNetwork | None]:
    """The link for ``profile``, or None (loopback) when it shapes nothing."""
    if not profile.shaped:
        yield None
        return
    with ServiceNetwork(profile, engine=engine) as network:
        yield network
