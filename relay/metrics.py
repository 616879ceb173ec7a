"""Prometheus metrics of product.md section 6.

The data path counts in plain fields (sessions, backends, listeners); ``flush``
turns those into prometheus_client metrics: deltas for counters, values for
gauges, queued samples for histograms. It runs once a second and right before
every scrape, so /metrics is never stale and totals are exact once sessions close.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from relay.core.health import ADMIN_STATES
from relay.exposition import pieces

if TYPE_CHECKING:
    from relay.net.server import RelayServer

CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FLUSH_STEP = 25  # backends flushed per step (a new backend's first flush costs ~0.2 ms)
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)


disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        process_collector.ProcessCollector(registry=r)
        platform_collector.PlatformCollector(registry=r)
        gc_collector.GCCollector(registry=r)
        self.accepted = Counter("relay_connections_accepted", "Client connections accepted.",
                                ["listener"], registry=r)
        self.rejected = Counter("relay_connections_rejected",
                                "Client connections closed without a backend session.",
                                ["listener", "reason"], registry=r)
        self.active = Gauge("relay_connections_active", "Sessions open now.",
                            ["listener", "backend"], registry=r)
        self.bytes = Counter("relay_bytes", "Bytes relayed (upstream = client to backend).",
                             ["listener", "backend", "direction"], registry=r)
        self.backend_up = Gauge("relay_backend_up", "1 when the backend is up, else 0.",
                                ["listener", "backend"], registry=r)
        self.admin_state = Gauge("relay_backend_admin_state",
                                 "1 on the backend's current admin state.",
                                 ["listener", "backend", "state"], registry=r)
        self.connect_errors = Counter("relay_backend_connect_errors",
                                      "Failed connects to a backend, by reason.",
                                      ["listener", "backend", "reason"], registry=r)
        self.connect_seconds = Histogram("relay_backend_connect_seconds",
                                         "Time to connect to a backend.",
                                         ["listener", "backend"], buckets=CONNECT_BUCKETS,
                                         registry=r)
        self.checks = Counter("relay_health_checks", "Active health checks, by result.",
                              ["listener", "backend", "result"], registry=r)
        self.transitions = Counter("relay_backend_transitions", "Backend up/down transitions.",
                                   ["listener", "backend", "to"], registry=r)
        self.active_tier = Gauge("relay_listener_active_tier",
                                 "Tier serving new sessions (-1 when none).", ["listener"],
                                 registry=r)
        self.hedges = Counter("relay_connect_hedges", "Hedged connects, by which one won.",
                              ["listener", "outcome"], registry=r)
        self.max_connections = Gauge("relay_listener_max_connections",
                                     "The listener's max_connections (for saturation alerts).",
                                     ["listener"], registry=r)
        self.failovers = Counter("relay_failovers", "Changes of the serving tier.", ["listener"],
                                 registry=r)
        self.session_seconds = Histogram("relay_session_duration_seconds",
                                         "Duration of closed sessions.", ["listener"],
                                         buckets=DURATION_BUCKETS, registry=r)
        self.reloads = Counter("relay_config_reloads", "Configuration reloads, by result.",
                               ["result"], registry=r)
        self._seen: dict[tuple[object, ...], float] = {}  # last value flushed, per counter child

    def _add(self, metric: Counter, labels: tuple[str, ...], total: float) -> None:
        """Bring a counter child up to `total` (a running total kept by the data path)."""
        key = (metric, *labels)
        delta = total - self._seen.get(key, 0.0)
        if delta > 0 or key not in self._seen:
            metric.labels(*labels).inc(max(delta, 0.0))
            self._seen[key] = total

    def _add_all(self, metric: Counter, labels: tuple[str, ...], counts: Iterable[tuple[str, int]],
                 known: Iterable[str] = ()) -> None:
        values = dict.fromkeys(known, 0)
        values.update(counts)
        for label, total in values.items():
            self._add(metric, (*labels, label), total)

    def flush(self, server: RelayServer) -> None:
        for _ in self.flush_steps(server):
            pass

    def flush_steps(self, server: RelayServer) -> Iterator[None]:
        """flush() in steps of FLUSH_STEP backends, for a caller that lets the loop turn
        between them (a flush of 1,000 backends is tens of milliseconds)."""
        self._add_all(self.reloads, (), server.reloads.items(), ("success", "failure"))
        for listener in server.listeners:
            name = listener.name
            group = listener.group
            self._add(self.accepted, (name,), listener.accepted)
            self._add_all(self.rejected, (name,), listener.rejected.items(),
                          ("max_connections", "no_backend", "accept_error"))
            self.active_tier.labels(name).set(-1 if group.tiers.serving is None
                                              else group.tiers.serving)
            self._add(self.failovers, (name,), group.failovers)
            self.max_connections.labels(name).set(listener.config.max_connections)
            self._add_all(self.hedges, (name,), group.hedge_outcomes.items(),
                          ("primary_won", "hedge_won", "both_failed"))
            durations = listener.closed_durations
            child = self.session_seconds.labels(name)  # present (at zero) from the start
            if durations:
                observe_many(child, durations)
                durations.clear()
            for i, backend in enumerate(list(group.backends)):
                if i % FLUSH_STEP == FLUSH_STEP - 1:
                    yield
                b = backend.name
                up, down = backend.bytes_total()
                self._add(self.bytes, (name, b, "upstream"), up)
                self._add(self.bytes, (name, b, "downstream"), down)
                self.active.labels(name, b).set(backend.active)
                self.backend_up.labels(name, b).set(1 if backend.health.up else 0)
                for state in ADMIN_STATES:
                    self.admin_state.labels(name, b, state).set(
                        1 if backend.health.admin == state else 0)
                self._add_all(self.connect_errors, (name, b), backend.connect_errors.items(),
                              ("refused", "timeout", "unreachable", "reset", "dns", "other"))
                self._add_all(self.checks, (name, b), backend.checks.items(),
                              ("success", "failure"))
                self._add_all(self.transitions, (name, b), backend.transitions.items(),
                              ("up", "down"))
                child = self.connect_seconds.labels(name, b)
                if backend.connect_times:
                    observe_many(child, backend.connect_times)
                    backend.connect_times.clear()

    def render(self, server: RelayServer) -> bytes:
        self.flush(server)
        return generate_latest(self.registry)

    def render_steps(self, server: RelayServer) -> Iterator[bytes | None]:
        """render() in steps (None while flushing, then the text in pieces): what /metrics
        runs a few milliseconds at a time so that no session waits for a whole render."""
        yield from self.flush_steps(server)
        yield from pieces(self.registry)



def observe_many(child: Histogram, values: list[float]) -> None:
    """child.observe(v) for each v, in one pass: one increment per bucket and one for the
    sum, instead of a Python loop over the bounds and two locked increments per value (a
    busy listener closes thousands of sessions a second). Falls back to observe() should
    prometheus_client's histogram ever lay out its internals differently."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bucket with value <= bound
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))
