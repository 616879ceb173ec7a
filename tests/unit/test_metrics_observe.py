"""observe_many must give exactly what one observe() per value gives."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from relay.metrics import observe_many

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)


def _exposition(values: list[float], batched: bool) -> bytes:
    registry = CollectorRegistry()
    hist = Histogram("x_seconds", "x", ["l"], buckets=BUCKETS, registry=registry)
    child = hist.labels("a")
    if batched:
        observe_many(child, values)
    else:
        for value in values:
            child.observe(value)
    return generate_latest(registry)


def test_observe_many_matches_observe_including_values_on_the_bounds():
    rng = random.Random(7)
    values = [rng.uniform(0, 20) for _ in range(500)] + list(BUCKETS) + [0.0, 1e9]
    batched = _exposition(values, batched=True)
    one_by_one = _exposition(values, batched=False)
    exact = [line for line in batched.splitlines() if b"_sum" not in line]
    assert exact == [line for line in one_by_one.splitlines() if b"_sum" not in line]
    # added in another order: the sums may differ in their last bits only
    sums = [float(line.split()[1]) for text in (batched, one_by_one)
            for line in text.splitlines() if line.startswith(b"x_seconds_sum")]
    assert len(sums) == 2 and abs(sums[0] - sums[1]) <= 1e-9 * sums[1]
    assert b'x_seconds_bucket{l="a",le="0.001"} 2.0' in batched  # 0.0 and 0.001 itself
    assert b'x_seconds_count{l="a"} 507.0' in batched


def test_observe_many_of_nothing_changes_nothing():
    assert _exposition([], batched=True) == _exposition([], batched=False)
