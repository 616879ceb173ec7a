"""The status page's memory of the recent past: bounded, newest first, rates from totals."""

from __future__ import annotations

from relay.core.events import TEXT_MAX, EventRing, History


def test_ring_keeps_the_newest_events_newest_first() -> None:
    ring = EventRing(capacity=3)
    for i in range(5):
        ring.add(100.0 + i, "backend_down", backend=f"b{i}", cause="connect refused")
    recent = ring.recent()
    assert [e["backend"] for e in recent] == ["b4", "b3", "b2"]
    assert recent[0] == {"at": 104.0, "event": "backend_down", "backend": "b4",
                         "cause": "connect refused"}
    assert ring.total == 5


def test_ring_bounds_each_field() -> None:
    ring = EventRing()
    ring.add(1.0, "reload", cause="rejected", problem="x" * 10_000, listeners=3, ok=None)
    (event,) = ring.recent()
    assert len(str(event["problem"])) == TEXT_MAX
    assert event["listeners"] == 3 and event["ok"] is None


def test_history_rates_from_byte_totals() -> None:
    history = History(capacity=3)
    history.add(10.0, 1, 0)
    history.add(11.0, 2, 1000)
    history.add(13.0, 2, 5000)  # 4000 bytes in 2 s
    history.add(14.0, 0, 100)  # the total dropped (a backend removed): no traffic, not negative
    assert history.export() == {"seconds_ago": [3.0, 1.0, 0.0], "sessions": [2, 2, 0],
                                "bytes_per_second": [1000, 2000, 0]}


def test_history_empty() -> None:
    assert History().export() == {"seconds_ago": [], "sessions": [], "bytes_per_second": []}
