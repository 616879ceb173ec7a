"""Log lines that clients can cause, aggregated per key (e.g. a backend) and interval. Pure.

The first event of a quiet period is logged at once; the ones after it within
`interval` are counted, and one line per interval says how many and the last detail.
So however many clients fail, relay writes a bounded number of lines per second.
"""

from __future__ import annotations

from dataclasses import dataclass

LOG_INTERVAL = 10.0  # seconds between summary lines of one key


@dataclass(frozen=True)
class Summary:
    count: int  # events since the previous line
    detail: str  # the last one's


class LogAggregate:
    __slots__ = ("count", "detail", "interval", "window_end")

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self.window_end: float | None = None  # None: quiet, the next event is logged at once
        self.count = 0  # events held back since the last line
        self.detail = ""

    def record(self, now: float, detail: str) -> bool:
        """An event: True when it is to be logged now (the first of a quiet period). Else it
        is counted; `flush_due` says when its summary is due (the edge sets a timer then)."""
        if self.window_end is None or (now >= self.window_end and not self.count):
            self.window_end = now + self.interval
            return True
        self.count += 1
        self.detail = detail
        return False

    @property
    def flush_due(self) -> float | None:
        """When the held-back events' summary is due (None: nothing held back)."""
        return self.window_end if self.count else None

    def flush(self, now: float) -> Summary | None:
        """The summary line of the events held back, due now; None (and quiet again) when
        none were."""
        if not self.count:
            self.window_end = None
            return None
        summary = Summary(self.count, self.detail)
        self.count = 0
        self.window_end = now + self.interval
        return summary
