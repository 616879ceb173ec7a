"""/metrics in pieces: the same bytes as generate_latest, in bounded slices of the loop."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from relay.exposition import pieces
from relay.net.admin import is_loopback
from relay.net.resolve import SockAddr
from relay.net.sliced import SlicedJob
from tests.support.fakeclock import turn


class _Custom:
    def collect(self):
        family = GaugeMetricFamily("custom_thing", "a collector that is not a metric", labels=["k"])
        family.add_metric(["a\\b\"c\n"], 1.5)
        return [family]


def _registry(children: int) -> CollectorRegistry:
    r = CollectorRegistry()
    c = Counter("things", "Things\nwith a newline and \\ in the help.", ["a", "b"], registry=r)
    g = Gauge("level", "Level.", ["a"], registry=r)
    h = Histogram("wait_seconds", "Waits.", ["a"], buckets=(0.1, 1.0), registry=r)
    Counter("plain", "No labels.", registry=r).inc(3)
    Gauge("empty", "A labelled family with no children yet.", ["x"], registry=r)
    r.register(_Custom())
    for i in range(children):
        c.labels(f"n{i}", 'quote"d').inc(i)
        g.labels(f"n{i}").set(-i / 3)
        h.labels(f"n{i}").observe(i / 10)
    return r


@pytest.mark.parametrize("children,batch", [(0, 1), (1, 1), (7, 2), (50, 7), (50, 256), (9, 3)])
def test_pieces_are_generate_latest_cut_in_slices(children, batch):
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as relay.metrics does
    registry = _registry(children)
    parts = list(pieces(registry, batch))
    assert b"".join(parts) == generate_latest(registry)
    if children * 4 > batch:  # the histogram alone has more samples than a piece holds
        assert len(parts) > 6  # so it was cut: more pieces than families


def test_with_created_series_each_family_comes_whole_and_the_same():
    enable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        registry = _registry(20)
        assert b"".join(pieces(registry, 3)) == generate_latest(registry)
    finally:
        disable_created_metrics()  # type: ignore[no-untyped-call]


def test_a_sliced_job_yields_to_the_loop_and_hands_back_its_values(reactors):
    loop = reactors(0.0)  # its call_soon queue, turned by hand
    done: list[tuple[list[int], BaseException | None]] = []

    def steps() -> Iterator[int | None]:
        for i in range(5):
            yield None
            yield i

    SlicedJob(loop, steps(), lambda r, e: done.append((r, e)), budget=-1.0)
    turns = 0
    while turn(loop):
        turns += 1
    assert done == [([0, 1, 2, 3, 4], None)]
    assert turns == 11  # one step a turn with no budget, then the end


def test_a_sliced_job_that_fails_reports_the_error_once(reactors):
    loop = reactors(0.0)
    done: list[tuple[list[int], BaseException | None]] = []

    def steps() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    SlicedJob(loop, steps(), lambda r, e: done.append((r, e)))
    while turn(loop):
        pass
    assert len(done) == 1 and done[0][0] == [] and isinstance(done[0][1], ValueError)


@pytest.mark.parametrize("host,family,loopback", [
    ("127.0.0.1", socket.AF_INET, True), ("127.0.0.2", socket.AF_INET, True),
    ("0.0.0.0", socket.AF_INET, False), ("10.1.2.3", socket.AF_INET, False),
    ("::1", socket.AF_INET6, True), ("::", socket.AF_INET6, False),
    ("::ffff:127.0.0.1", socket.AF_INET6, True), ("::ffff:10.0.0.1", socket.AF_INET6, False),
    ("fe80::1%eth0", socket.AF_INET6, False),
])
def test_only_loopback_addresses_count_as_loopback(host, family, loopback):
    sockaddr = (host, 9100) if family == socket.AF_INET else (host, 9100, 0, 0)
    assert is_loopback(SockAddr(family, sockaddr)) is loopback
