"""What the status page shows of the recent past, in bounded memory (pure: callers give the time).

EventRing keeps the last few events (backend up/down with its cause, tier changes, operator
actions, reloads); History keeps one sample per second (sessions, bytes relayed so far) for
the last few minutes and gives rates from it.
"""

from __future__ import annotations

from collections import deque
from typing import Final

EVENTS_KEPT: Final = 50
SAMPLES_KEPT: Final = 300  # five minutes at one sample a second
TEXT_MAX: Final = 200  # characters kept of any one field (a backend's error text, say)


def _field(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:TEXT_MAX]


class EventRing:
    def __init__(self, capacity: int = EVENTS_KEPT) -> None:
        self._events: deque[dict[str, object]] = deque(maxlen=max(1, capacity))
        self.total = 0  # events ever added: a reader can tell how many it missed

    def add(self, at: float, kind: str, **fields: object) -> None:
        """One event at wall-clock time `at` (seconds since the epoch)."""
        self.total += 1
        event: dict[str, object] = {"at": round(at, 3), "event": kind}
        event.update((k, _field(v)) for k, v in fields.items())
        self._events.append(event)

    def recent(self) -> list[dict[str, object]]:
        """The events kept, newest first."""
        return list(reversed(self._events))


class History:
    """Per-second samples: sessions open, and bytes per second from a running byte total."""

    def __init__(self, capacity: int = SAMPLES_KEPT) -> None:
        self._samples: deque[tuple[float, int, float]] = deque(maxlen=max(2, capacity))
        self._last: tuple[float, int] | None = None  # (time, byte total) of the last sample

    def add(self, now: float, sessions: int, bytes_total: int) -> None:
        """A sample at monotonic time `now`; `bytes_total` only grows (a drop, as after a
        reload removed a backend, counts as no traffic rather than a negative rate)."""
        rate = 0.0
        if self._last is not None:
            elapsed = now - self._last[0]
            moved = bytes_total - self._last[1]
            if elapsed > 0 and moved > 0:
                rate = moved / elapsed
        self._last = (now, bytes_total)
        self._samples.append((now, max(0, sessions), rate))

    def export(self) -> dict[str, object]:
        """Oldest first: seconds before the last sample, sessions, bytes per second."""
        if not self._samples:
            return {"seconds_ago": [], "sessions": [], "bytes_per_second": []}
        last = self._samples[-1][0]
        return {
            "seconds_ago": [round(last - t, 1) for t, _, _ in self._samples],
            "sessions": [s for _, s, _ in self._samples],
            "bytes_per_second": [round(r) for _, _, r in self._samples],
        }
