"""The Prometheus text format of a registry, a piece at a time.

``generate_latest`` renders a whole registry in one call: with 1,000 backends that is
2.5 MB and a quarter of a second of Python, during which the loop serves no session.
``pieces`` yields the same bytes in slices of a few hundred samples, so the caller can
let the loop turn between them. It drives each metric's own sample generator (the path
``collect()`` takes), through prometheus_client internals; a collector or registry that
does not have them (or *_created series, which go after their whole family) is rendered
whole, as ``generate_latest`` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client import metrics as client_metrics
from prometheus_client.metrics import MetricWrapperBase

BATCH = 256  # samples per piece: a few milliseconds of formatting


class _Fixed:
    """A collector of metrics already collected (what generate_latest takes)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def pieces(registry: CollectorRegistry, batch: int = BATCH) -> Iterator[bytes]:
    """generate_latest(registry), as consecutive pieces whose concatenation is the same."""
    collectors = getattr(registry, "_collector_to_names", None)
    lock = getattr(registry, "_lock", None)
    if collectors is None or lock is None or getattr(registry, "_target_info", None):
        yield generate_latest(registry)
        return
    with lock:
        collectors = list(collectors)
    for collector in collectors:
        yield from _collector_pieces(collector, batch)


def _collector_pieces(collector: object, batch: int) -> Iterator[bytes]:
    name = getattr(collector, "_name", None)
    created = getattr(client_metrics, "_use_created", True)  # *_created go after a family
    if created or not (isinstance(collector, MetricWrapperBase) and isinstance(name, str)
            and hasattr(collector, "_samples") and hasattr(collector, "_get_metric")):
        yield generate_latest(_Fixed(list(collector.collect())))  # type: ignore[attr-defined]
        return
    samples = iter(collector._samples())
    first = True
    while True:
        metric: Metric = collector._get_metric()  # type: ignore[no-untyped-call]
        for suffix, labels, value, timestamp, exemplar, native in islice(samples, batch):
            metric.add_sample(name + suffix, labels, value, timestamp, exemplar, native)
        if not metric.samples and not first:
            return
        text = generate_latest(_Fixed([metric]))
        if not first:  # the family's # HELP and # TYPE lines come once, with the first piece
            text = text.split(b"\n", 2)[2]
        first = False
        yield text
        if len(metric.samples) < batch:
            return
