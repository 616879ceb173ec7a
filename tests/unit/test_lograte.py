"""Aggregated log lines (relay/core/lograte.py) on a fake clock."""

from __future__ import annotations

from relay.core.lograte import LogAggregate, Summary


def lines_for(events_at: list[float], interval: float = 10.0) -> list[tuple[float, object]]:
    """Drive an aggregate as relay/net/listener.py does: a timer at flush_due when the first
    event is held back. Returns the lines written (when, what)."""
    agg = LogAggregate(interval)
    lines: list[tuple[float, object]] = []
    timers: list[float] = []
    for t in events_at:
        while timers and timers[0] <= t:
            due = timers.pop(0)
            summary = agg.flush(due)
            if summary is not None:
                lines.append((due, summary))
        if agg.record(t, f"e{t}"):
            lines.append((t, "first"))
        elif agg.count == 1 and agg.flush_due is not None:
            timers.append(agg.flush_due)
    for due in timers:
        summary = agg.flush(due)
        if summary is not None:
            lines.append((due, summary))
    return lines


def test_the_first_failure_is_logged_at_once():
    assert lines_for([5.0]) == [(5.0, "first")]


def test_a_flood_gives_one_line_per_interval_with_a_count():
    events = [i / 5000 for i in range(5000 * 30)]  # 5,000 a second for 30 s
    lines = lines_for(events)
    assert len(lines) <= 1 + 30 / 10 + 1
    assert lines[0] == (0.0, "first")
    total = 1 + sum(s.count for _, s in lines[1:] if isinstance(s, Summary))
    assert total == len(events)  # every event counted, none lost
    last = lines[-1][1]
    assert isinstance(last, Summary) and last.detail == f"e{events[-1]}"


def test_after_a_quiet_interval_the_next_failure_is_logged_at_once_again():
    lines = lines_for([0.0, 1.0, 25.0, 26.0])
    assert lines[0] == (0.0, "first")
    assert lines[1] == (10.0, Summary(1, "e1.0"))
    assert lines[2] == (25.0, "first")
    assert lines[3] == (35.0, Summary(1, "e26.0"))
