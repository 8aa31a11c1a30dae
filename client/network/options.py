"""The command-line options that choose a network, shared by ``make run`` (the GUI and
the headless comparison), ``make bench`` and ``make claims``."""

from __future__ import annotations

import argparse

from client.network.namespace import ENGINES
from client.network.profiles import PROFILES, Profile, resolve


def add_network_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "network", "put a network between the client and the services (root; the services "
        "then run in a network namespace of their own)",
    )  # fmt: skip
    group.add_argument("--network", choices=list(PROFILES), help="a named profile")
    group.add_argument("--rtt-ms", type=float, help="round trip, ms")
    group.add_argument("--down-mbit", type=float, help="services to client, Mbit/s")
    group.add_argument("--up-mbit", type=float, help="client to services, Mbit/s")
    group.add_argument("--loss-pct", type=float, help="packet loss each way, %%")
    group.add_argument("--jitter-ms", type=float, help="round-trip jitter, ± ms")
    group.add_argument(
        "--link-engine", choices=("auto", *ENGINES), default="auto",
        help="what makes delay, jitter and loss: the kernel's netem, or vde2's wirefilter "
        "(user space, for kernels without netem); auto: netem where the kernel has it",
    )  # fmt: skip
    group.add_argument(
        "--rate-only", action="store_true", help="the profile's bandwidths alone (no delay)"
    )


def profile_from(args: argparse.Namespace) -> Profile:
    """The profile the options ask for (loopback when none); ProfileError if invalid."""
    return resolve(
        args.network,
        rtt_ms=args.rtt_ms,
        down_mbit=args.down_mbit,
        up_mbit=args.up_mbit,
        loss_pct=args.loss_pct,
        jitter_ms=args.jitter_ms,
        rate_only=args.rate_only,
    )
