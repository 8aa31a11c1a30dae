"""Prometheus instruments for requests and pipeline stages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from facewire.errors import FacewireError
from facewire.messages import Timings

# Milliseconds to seconds; the pipeline takes 1–100 ms, echo far less.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)
_STAGES = tuple(f.name for f in fields(Timings))

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per service instance (never the global one: factories can run twice)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "facewire_requests",
            "Detection requests by protocol, model and outcome: ok, or the error kind.",
            ["protocol", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facewire_request_duration_seconds",
            "Time per detection request inside the service, from its arrival to its answer.",
            ["protocol", "model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "facewire_stage_duration_seconds",
            "Pipeline time per stage for successful requests.",
            ["protocol", "stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "facewire_requests_in_flight",
            "Detection requests this process holds now, queued or running.",
            registry=self.registry,
        )
        self.inflight_limit = Gauge(
            "facewire_requests_in_flight_limit",
            "The most it holds (FACEWIRE_MAX_INFLIGHT); beyond, requests are refused.",
            registry=self.registry,
        )
        # labels() finds its child under a lock on every call; these keep the children.
        self._stage_children: dict[str, list[tuple[str, Histogram]]] = {}
        self._request_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    @contextmanager
    def track(self, protocol: str, model: str) -> Iterator[None]:
        """Count and time one request, whatever becomes of it: the one way every
        endpoint of both services records its requests. ``model`` is a label
        (``Model.label``); the status is "ok", the refusal's ``FacewireError.kind``, or
        "internal_error"."""
        start = time.perf_counter_ns()
        try:
            yield
        except FacewireError as exc:
            self.observe(protocol, model, exc.kind, start)
            raise
        except Exception:
            self.observe(protocol, model, "internal_error", start)
            raise
        self.observe(protocol, model, "ok", start)

    def observe(self, protocol: str, model: str, status: str, start_ns: int) -> None:
        """One finished request. ``model`` and ``status`` must be fixed labels: a known
        model name or "invalid", and "ok" or a ``FacewireError.kind``."""
        elapsed = (time.perf_counter_ns() - start_ns) / 1e9
        key = (protocol, model, status)
        children = self._request_children.get(key)
        if children is None:
            children = self.requests.labels(*key), self.latency.labels(protocol, model)
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

    def observe_stages(self, protocol: str, timings: Timings) -> None:
        children = self._stage_children.get(protocol)
        if children is None:
            children = [(s, self.stages.labels(protocol, s)) for s in _STAGES]
            self._stage_children[protocol] = children
        for stage, child in children:
            child.observe(getattr(timings, stage) / 1000)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything in this registry."""
        return generate_latest(self.registry)
