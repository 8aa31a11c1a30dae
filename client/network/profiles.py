"""Network profiles: a named link (bandwidth each way, round trip, jitter, loss) and the
exact ``tc`` commands that make one.

The named profiles come from public tables, each with its source:

- WebPageTest's connectivity profiles (``www/settings/connectivity.ini.sample`` in
  WPO-Foundation/webpagetest): cable, dsl, fios, 3g, 3gfast, 4g, lte;
- tylertreat/comcast's network condition table (its README): wifi, with its loss;
- Ethernet line rates: lan (1 Gbit/s) and fast-ethernet (100 Mbit/s), rate only.

Bandwidth is shaped with ``tbf`` on each end of the link (its egress is one direction);
delay, jitter and loss come from a link engine (``client.network.namespace``): the
kernel's ``netem``, half the round trip on each side, or, on a kernel without netem,
vde2's ``wirefilter`` in user space (``client.network.wirefilter``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

#: A tbf bucket never smaller than this (a few full-size frames): smaller buckets
#: throttle below the rate, larger ones let a burst through at line speed.
MIN_BURST_BYTES = 4_500
#: Time a packet may wait in a tbf queue before it is dropped: TCP's window keeps the
#: queue short on its own; this only bounds a sender that ignores it.
QUEUE_MS = 400
#: The kernel timer frequency tbf's bucket must cover (the common CONFIG_HZ, and the
#: highest of 100/250/300/1000 that matters for a bucket's size is the lowest).
KERNEL_HZ = 250


@dataclass(frozen=True)
class Profile:
    """One link. Rates in Mbit/s (None: not shaped), times in ms, loss in percent."""

    name: str
    down_mbit: float | None
    up_mbit: float | None
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    source: str = "custom"

    @property
    def impaired(self) -> bool:
        """Delay, jitter or loss: what tbf cannot do (netem or wirefilter must)."""
        return self.rtt_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0

    @property
    def shaped(self) -> bool:
        return self.down_mbit is not None or self.up_mbit is not None or self.impaired

    def rate_only(self) -> Profile:
        """This profile's bandwidths, without its delay, jitter and loss."""
        return replace(self, name=f"{self.name} (rate only)", rtt_ms=0.0, jitter_ms=0.0,
                       loss_pct=0.0)  # fmt: skip

    def describe(self) -> str:
        """One line for a report's first lines."""
        if not self.shaped:
            return f"{self.name}: no shaping (loopback speed)"
        parts = [f"{_rate(self.down_mbit)} down / {_rate(self.up_mbit)} up"]
        if self.rtt_ms:
            parts.append(f"{self.rtt_ms:g} ms RTT")
        if self.jitter_ms:
            parts.append(f"±{self.jitter_ms:g} ms jitter")
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g} % loss")
        return f"{self.name}: {', '.join(parts)} ({self.source})"

    def label(self, engine: str) -> str:
        """A short line for a window's header: name, values, and the engine."""
        parts = []
        if self.down_mbit is not None or self.up_mbit is not None:
            parts.append(f"{_short(self.down_mbit)}/{_short(self.up_mbit)} Mbit/s")
        if self.rtt_ms:
            parts.append(
                f"{self.rtt_ms:g} ms" + (f" ±{self.jitter_ms:g}" if self.jitter_ms else "")
            )
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g} % loss")
        return f"{self.name} ({', '.join(parts)}; {engine})"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "description": self.describe()}


def _short(mbit: float | None) -> str:
    return "-" if mbit is None else f"{mbit:g}"


def _rate(mbit: float | None) -> str:
    return "unshaped" if mbit is None else f"{mbit:g} Mbit/s"


WPT = "WebPageTest connectivity.ini.sample"
COMCAST = "tylertreat/comcast README"
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("loopback", None, None, source="no shaping"),
        Profile("lan", 1000, 1000, source="Gigabit Ethernet line rate"),
        Profile("fast-ethernet", 100, 100, source="Fast Ethernet line rate"),
        Profile("wifi", 30, 30, rtt_ms=40, loss_pct=0.2, source=COMCAST),  # "WIFI (good)"
        Profile("fios", 20, 5, rtt_ms=4, source=WPT),
        Profile("cable", 5, 1, rtt_ms=28, source=WPT),
        Profile("dsl", 1.5, 0.384, rtt_ms=50, source=WPT),
        Profile("lte", 12, 12, rtt_ms=70, source=WPT),
        Profile("4g", 9, 9, rtt_ms=170, source=WPT),
        Profile("3gfast", 1.6, 0.768, rtt_ms=150, source=WPT),
        Profile("3g", 1.6, 0.768, rtt_ms=300, source=WPT),
    )
}


class ProfileError(ValueError):
    """A profile that cannot be made: unknown, or asking what this kernel lacks."""


def resolve(
    name: str | None,
    *,
    rtt_ms: float | None = None,
    down_mbit: float | None = None,
    up_mbit: float | None = None,
    loss_pct: float | None = None,
    jitter_ms: float | None = None,
    rate_only: bool = False,
) -> Profile:
    """A named profile (``None``: loopback), with any custom value put over it."""
    if name is not None and name not in PROFILES:
        raise ProfileError(f"unknown network profile {name!r}; known: {', '.join(PROFILES)}")
    base = PROFILES[name or "loopback"]
    custom = {"rtt_ms": rtt_ms, "down_mbit": down_mbit, "up_mbit": up_mbit,
              "loss_pct": loss_pct, "jitter_ms": jitter_ms}  # fmt: skip
    given = {key: value for key, value in custom.items() if value is not None}
    for key, value in given.items():
        if value < 0 or (key.endswith("mbit") and value == 0):
            raise ProfileError(f"--{key.replace('_', '-')} must be above 0")
        if key == "loss_pct" and value >= 100:
            raise ProfileError("--loss-pct must be below 100")
    if given:
        renamed = {"name": name, "source": f"{base.source}, with custom values"} if name else {
            "name": "custom", "source": "custom"}  # fmt: skip
        base = replace(base, **renamed, **given)  # type: ignore[arg-type]
    return base.rate_only() if rate_only else base


def _burst_bytes(mbit: float) -> int:
    return max(MIN_BURST_BYTES, math.ceil(mbit * 1e6 / 8 / KERNEL_HZ))


def tc_commands(
    profile: Profile, device: str, direction: str, *, with_netem: bool = True
) -> list[list[str]]:
    """The ``tc`` commands for one end of the link: ``device``'s egress carries
    ``direction`` ("up": client to services, or "down"). Run on the host for the
    client's end and inside the namespace for the services' end. Without netem,
    the rate alone (another engine delays and drops)."""
    rate = profile.up_mbit if direction == "up" else profile.down_mbit
    commands: list[list[str]] = []
    parent = ["root"]
    if with_netem and profile.impaired:
        netem = ["tc", "qdisc", "add", "dev", device, "root", "handle", "1:", "netem"]
        if profile.rtt_ms or profile.jitter_ms:
            netem += ["delay", f"{profile.rtt_ms / 2:g}ms"]
            if profile.jitter_ms:
                netem += [f"{profile.jitter_ms / 2:g}ms"]
        if profile.loss_pct:
            # Each packet crosses one end once: the loss applies there whole.
            netem += ["loss", f"{profile.loss_pct:g}%"]
        commands.append(netem)
        parent = ["parent", "1:1"]
    if rate is not None:
        commands.append([
            "tc", "qdisc", "add", "dev", device, *parent, "handle", "10:", "tbf",
            "rate", f"{rate:g}mbit", "burst", str(_burst_bytes(rate)),
            "latency", f"{QUEUE_MS}ms",
        ])  # fmt: skip
    return commands
