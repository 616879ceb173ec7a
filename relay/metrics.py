"""Prometheus metrics of product.md section 6.

The data path counts in plain fields (relay.net.counts: listeners, backends); ``flush``
turns those into prometheus_client metrics: deltas for counters and histogram buckets,
values for gauges. It runs once a second and right before every scrape, so /metrics is
never stale and totals are exact once sessions close. CONNECT_BUCKETS and
DURATION_BUCKETS are defined with the counts that use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
)

from relay.core.connect_error import CONNECT_ERRORS
from relay.core.health import ADMIN_STATES
from relay.exposition import pieces
from relay.metrics_authority import AuthorityMetrics
from relay.net.authority import AuthorityWatch
from relay.net.backends import Backend
from relay.net.counts import (
    CONNECT_BUCKETS,
    DURATION_BUCKETS,
    HEDGE_OUTCOMES,
    REJECT_REASONS,
    HistogramCounts,
)
from relay.net.listener import Listener

FLUSH_STEP = 25  # backends flushed per step (a new backend's first flush costs ~0.2 ms)


class Measured(Protocol):
    """What the metrics read of a relay process (relay.net.server.RelayServer is one)."""

    @property
    def listeners(self) -> Sequence[Listener]: ...

    @property
    def reloads(self) -> Mapping[str, int]: ...


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
        self.connections_open = Gauge("relay_connections_active", "Sessions open now.",
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
        # per backend: 16 series each, 1.4 KB of text; [runtime] backend_histograms = true
        self.backend_histograms = False
        self.connect_seconds = Histogram("relay_backend_connect_seconds",
                                         "Time to connect to a backend (with [runtime] "
                                         "backend_histograms = true).",
                                         ["listener", "backend"], buckets=CONNECT_BUCKETS,
                                         registry=r)
        self.checks = Counter("relay_health_checks", "Active health checks, by result.",
                              ["listener", "backend", "result"], registry=r)
        self.transitions = Counter("relay_backend_transitions", "Backend up/down transitions.",
                                   ["listener", "backend", "to"], registry=r)
        self.resolve_failures = Counter("relay_backend_resolve_failures",
                                        "Lookups of a backend's host name that failed or got "
                                        "no answer in time (its last address was kept).",
                                        ["listener", "backend"], registry=r)
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
        self.authorities = AuthorityMetrics(r)  # issue 15
        self._seen: dict[tuple[object, ...], float] = {}  # last value flushed, per counter child
        self._hist_seen: dict[tuple[object, ...], tuple[list[int], int]] = {}
        self._backends: dict[tuple[str, str], Backend] = {}  # every backend with series
        self._final: set[tuple[str, str]] = set()  # removed, sessions all closed
        self._reported: set[tuple[str, str]] = set()  # ... and a scrape has shown that

    def _add(self, metric: Counter, labels: tuple[str, ...], total: float,
             lazy: bool = False) -> None:
        """Bring a counter child up to `total` (a running total kept by the data path).
        lazy: no series while the total is 0 (a backend's rare counters: see _flush_backend)."""
        key = (metric, *labels)
        seen = self._seen.get(key)
        if seen is None:
            if lazy and total <= 0:
                return
            seen = 0.0
        elif total <= seen:
            return
        metric.labels(*labels).inc(max(total - seen, 0.0))
        self._seen[key] = total

    def _add_all(self, metric: Counter, labels: tuple[str, ...], counts: Iterable[tuple[str, int]],
                 known: Iterable[str] = (), lazy: bool = False) -> None:
        values = dict.fromkeys(known, 0)
        values.update(counts)
        for label, total in values.items():
            self._add(metric, (*labels, label), total, lazy)

    def _set_lazy(self, metric: Gauge, labels: tuple[str, ...], value: float) -> None:
        """A gauge's series once it has been non-zero (admin states other than the current)."""
        if value or (metric, *labels) in self._seen:
            metric.labels(*labels).set(value)
            self._seen[(metric, *labels)] = value

    def _add_histogram(self, metric: Histogram, labels: tuple[str, ...],
                       counts: HistogramCounts) -> None:
        """Bring a histogram child up to the bucket counts and sum the data path keeps."""
        key = (metric, *labels)
        buckets, total = counts.buckets(), counts.sum_ns()
        seen_buckets, seen_total = self._hist_seen.get(key, ([0] * len(buckets), 0))
        child = metric.labels(*labels)
        inner = getattr(child, "_buckets", None)
        inner_sum = getattr(child, "_sum", None)
        if inner is None or inner_sum is None or len(inner) != len(buckets):
            bounds = (*counts.bounds, counts.bounds[-1])  # (+Inf samples at the last bound)
            for bound, now, before in zip(bounds, buckets, seen_buckets, strict=True):
                for _ in range(max(now - before, 0)):
                    child.observe(bound)
        else:
            for value, now, before in zip(inner, buckets, seen_buckets, strict=True):
                if now > before:
                    value.inc(now - before)
            if total > seen_total:
                inner_sum.inc((total - seen_total) / 1e9)
        self._hist_seen[key] = ([max(a, b) for a, b in zip(buckets, seen_buckets, strict=True)],
                                max(total, seen_total))

    def flush(self, server: Measured) -> None:
        for _ in self.flush_steps(server):
            pass

    def flush_steps(self, server: Measured) -> Iterator[None]:
        """flush() in steps of FLUSH_STEP backends, for a caller that lets the loop turn
        between them (a flush of 1,000 backends is tens of milliseconds)."""
        self._add_all(self.reloads, (), server.reloads.items(), ("success", "failure"))
        present: dict[tuple[str, str], Backend] = {}
        for listener in server.listeners:
            name = listener.name
            group = listener.group
            self._add(self.accepted, (name,), listener.accepted)
            self._add_all(self.rejected, (name,), listener.rejected.items(), REJECT_REASONS)
            self.active_tier.labels(name).set(-1 if group.tiers.serving is None
                                              else group.tiers.serving)
            self._add(self.failovers, (name,), group.failovers)
            self.max_connections.labels(name).set(listener.config.max_connections)
            self._add_all(self.hedges, (name,), group.hedge_outcomes.items(), HEDGE_OUTCOMES)
            self._add_histogram(self.session_seconds, (name,), listener.durations)
            if isinstance(group.authority, AuthorityWatch):  # issue 15
                self.authorities.flush(self._add, name, group.authority)
            for i, backend in enumerate(list(group.backends)):
                if i % FLUSH_STEP == FLUSH_STEP - 1:
                    yield
                present[(name, backend.name)] = backend
                self._flush_backend(name, backend)
                self.backend_up.labels(name, backend.name).set(1 if backend.health.up else 0)
                for state in ADMIN_STATES:
                    self._set_lazy(self.admin_state, (name, backend.name, state),
                                   1 if backend.health.admin == state else 0)
                self._add_all(self.checks, (name, backend.name), backend.checks.items(),
                              lazy=True)
                self._add_all(self.transitions, (name, backend.name),
                              backend.transitions.items(), lazy=True)
                self._add(self.resolve_failures, (name, backend.name), backend.resolve_failures,
                          lazy=True)
        self._flush_removed(present)

    def _flush_backend(self, name: str, backend: Backend) -> None:
        """What a backend's sessions count (also of one a reload removed, until they close)."""
        b = backend.name
        up, down = backend.bytes_total()
        self._add(self.bytes, (name, b, "upstream"), up)
        self._add(self.bytes, (name, b, "downstream"), down)
        self.connections_open.labels(name, b).set(backend.session_count)
        self._add_all(self.connect_errors, (name, b), backend.connect_errors.items(), lazy=True)
        if self.backend_histograms:
            self._add_histogram(self.connect_seconds, (name, b), backend.connect_seconds)
        elif (self.connect_seconds, name, b) in self._hist_seen:  # a reload turned them off
            with contextlib.suppress(KeyError):
                self.connect_seconds.remove(name, b)
            del self._hist_seen[(self.connect_seconds, name, b)]

    def _flush_removed(self, present: dict[tuple[str, str], Backend]) -> None:
        """A backend that a reload removed or renamed keeps its series while sessions are
        open on it (their bytes are counted when they close); once the last one has closed
        and a scrape has shown its final values, its series go."""
        for key, backend in list(self._backends.items()):
            if present.get(key) is backend:
                continue
            if key in present or key in self._reported:
                self._remove_series(*key)
                del self._backends[key]
                self._final.discard(key)
                self._reported.discard(key)
                continue
            self._flush_backend(key[0], backend)
            if backend.session_count == 0 and not backend.remote_pending:
                self._final.add(key)
        self._backends.update(present)

    def _remove_series(self, listener: str, backend: str) -> None:
        labelled: list[tuple[Counter | Gauge | Histogram, tuple[str, ...]]] = [
            (self.connections_open, ()), (self.backend_up, ()), (self.connect_seconds, ()),
            (self.resolve_failures, ()),
            *((self.bytes, (d,)) for d in ("upstream", "downstream")),
            *((self.admin_state, (s,)) for s in ADMIN_STATES),
            *((self.connect_errors, (r,)) for r in CONNECT_ERRORS),
            *((self.checks, (r,)) for r in ("success", "failure")),
            *((self.transitions, (t,)) for t in ("up", "down")),
        ]
        for metric, rest in labelled:
            labels = (listener, backend, *rest)
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
            self._seen.pop((metric, *labels), None)
            self._hist_seen.pop((metric, *labels), None)

    def render_steps(self, server: Measured) -> Iterator[bytes | None]:
        """The /metrics text in steps (None while flushing, then the text in pieces): what it
        runs a few milliseconds at a time so that no session waits for a whole render."""
        yield from self.flush_steps(server)
        yield from pieces(self.registry)
        self._reported |= self._final  # removed backends' final values have been shown
