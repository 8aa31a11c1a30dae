"""What a link engine itself can carry on this machine: the round trip it adds at 0 ms,
the highest rate it forwards, and the packets per second. A user-space emulator
(wirefilter) has limits a kernel qdisc does not: a profile beyond them would measure
the engine, not the profile, so it is refused before the run (``refuse_beyond``).

Measured on an unshaped link of the engine's own (no delay, no loss, no tbf), by the
link check's probes, and kept in a cache file per machine, kernel and engine version
(``make linkcheck`` measures again and rewrites it).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from client.network import wirefilter
from client.network.linkcheck import RATE_BYTES, WIRE_OVERHEAD, Arrivals, Helper
from client.network.namespace import ServiceNetwork
from client.network.profiles import Profile, ProfileError

#: A profile's rate must stay under this share of the engine's highest, so that the
#: engine's own queueing is a small part of what the run measures; a direction the
#: profile leaves unshaped is held to it (tbf) on a wirefilter link: two-way traffic
#: faster than wirefilter forwards can fill dpipe's pipes both ways and stall the link.
CARRY_SHARE = 0.5
#: The probes: connects for the round trip; datagrams sent unpaced, one way (no
#: traffic back to stall on), full-size for the rate, small for the packet rate.
CONNECTS, FLOOD_DATAGRAMS = 20, 20_000
#: Where the measured limits are kept between runs.
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "facewire"
    / ("link-limits.json")
)
UNSHAPED = Profile("engine limits", None, None, source="the engine alone, nothing shaped")


@dataclass(frozen=True)
class EngineLimits:
    engine: str
    added_rtt_ms: float  # a TCP connect's median through the engine at 0 ms
    max_mbit: float  # full-size datagrams forwarded, client to services (sent unpaced)
    max_pps: float  # 64-byte datagrams forwarded per second (sent unpaced)
    datagrams_sent: int
    datagrams_forwarded: int
    measured_at: str
    machine: str

    def describe(self) -> str:
        return (
            f"{self.engine} on this machine adds {self.added_rtt_ms:.2f} ms of round trip at "
            f"0 ms, forwards at most {self.max_mbit:.0f} Mbit/s (1400-byte UDP) and "
            f"{self.max_pps:,.0f} packets/s (64-byte UDP; {self.datagrams_forwarded:,} of "
            f"{self.datagrams_sent:,} sent unpaced)"
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "description": self.describe()}


def machine_key(engine: str) -> str:
    """What the limits belong to: this machine, its kernel, the engine's version."""
    version = wirefilter.version() if engine == "wirefilter" else "kernel"
    return f"{engine}|{socket.gethostname()}|{platform.release()}|{version}"


def measure(engine: str) -> EngineLimits:
    """The engine's limits, measured now on an unshaped link of its own (root)."""
    network = ServiceNetwork(UNSHAPED, index=90, engine=engine, capped=False)
    with network, Helper(network) as helper:
        samples = [helper.connect_ms() for _ in range(CONNECTS)]
        full, _ = helper.datagrams(RATE_BYTES, (FLOOD_DATAGRAMS, 0.0), (0, 0.0), 0.5)
        small, _ = helper.datagrams(64, (FLOOD_DATAGRAMS, 0.0), (0, 0.0), 0.5)
    return EngineLimits(
        engine=engine,
        added_rtt_ms=round(statistics.median(samples), 3),
        max_mbit=round(_per_second(full) * (RATE_BYTES + WIRE_OVERHEAD) * 8 / 1e6, 1),
        max_pps=round(_per_second(small)),
        datagrams_sent=FLOOD_DATAGRAMS,
        datagrams_forwarded=small.arrived,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine_key(engine),
    )


def _per_second(arrivals: Arrivals) -> float:
    return (arrivals.arrived - 1) / arrivals.span_s if arrivals.span_s > 0 else 0.0


def cap_mbit(engine: str) -> float | None:
    """What a wirefilter link holds an unshaped direction to (None: no cap)."""
    return known(engine).max_mbit * CARRY_SHARE if engine == "wirefilter" else None


def _read_cache() -> dict[str, dict[str, object]]:
    try:
        loaded = json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


#: This process's limits by machine key: the cache file is read once, not per link.
_KNOWN: dict[str, EngineLimits] = {}


def remember(limits: EngineLimits) -> None:
    _KNOWN[limits.machine] = limits
    cached = _read_cache()
    cached[limits.machine] = asdict(limits)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(cached, indent=2) + "\n")


def known(engine: str) -> EngineLimits:
    """The engine's limits on this machine: from the cache, or measured now (a few
    seconds) and kept."""
    key = machine_key(engine)
    if key in _KNOWN:
        return _KNOWN[key]
    saved = _read_cache().get(key)
    if saved is not None:
        try:
            _KNOWN[key] = EngineLimits(**saved)  # type: ignore[arg-type]
            return _KNOWN[key]
        except TypeError:
            pass  # an older layout: measure again
    limits = measure(engine)
    remember(limits)
    return limits


def added_rtt_ms(engine: str) -> float:
    return known(engine).added_rtt_ms


def refuse_beyond(profile: Profile, engine: str) -> None:
    """ProfileError, in one line, for a profile whose rate the engine cannot carry
    with room to spare on this machine (the kernel's netem and tbf: no such limit)."""
    if engine != "wirefilter":
        return
    limits = known(engine)
    ceiling = limits.max_mbit * CARRY_SHARE
    for direction, mbit in (("down", profile.down_mbit), ("up", profile.up_mbit)):
        if mbit is not None and mbit > ceiling:
            raise ProfileError(
                f"profile {profile.name!r} asks {mbit:g} Mbit/s {direction}, beyond what "
                f"{engine} carries here ({limits.max_mbit:.0f} Mbit/s at most, measured "
                f"{limits.measured_at}; a profile may use {CARRY_SHARE:.0%} of it): use "
                "--link-engine netem for rates alone (tbf), or a lower rate"
            )
