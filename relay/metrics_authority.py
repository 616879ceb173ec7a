"""The authority's series (product.md section 9), flushed with the rest by relay.metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from relay.net.authority import AuthorityWatch


class AuthorityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.generation = Gauge("relay_authority_generation",
                                "The authority's generation (primary changes seen).",
                                ["listener"], registry=registry)
        self.up = Gauge("relay_authority_up", "1 when the source's last answer is fresh.",
                        ["listener", "source"], registry=registry)
        self.fenced = Counter("relay_fenced_sessions", "Sessions on an old primary reset when "
                              "the authority named a new one.", ["listener"], registry=registry)

    def flush(self, add: Callable[[Counter, tuple[str, ...], float], None], listener: str,
              watch: AuthorityWatch) -> None:
        self.generation.labels(listener).set(watch.state.generation)
        for source, up in watch.source_up().items():
            self.up.labels(listener, source).set(up)
        add(self.fenced, (listener,), watch.fenced)
