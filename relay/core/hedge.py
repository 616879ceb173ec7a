"""Connect hedging decisions. Pure: connect times come in as numbers, `now` is passed in.

A backend's usual connect time is an EWMA plus a high quantile of recent successful
connects. A session whose connect has not completed after `hedge_after` starts a
second connect to the next candidate; the first to complete wins.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

FLOOR: Final = 0.005  # never hedge sooner than this: loopback connects take tens of microseconds
MULTIPLE: Final = 4.0  # of the usual connect time
CAP_FRACTION: Final = 0.25  # of connect_timeout: hedging is for when waiting would cost seconds
UNKNOWN: Final = 0.05  # hedge_after before a backend has any connect time on record
LOSING_STREAK: Final = 5  # hedges in a row lost by a target: stop hedging towards it


def _first_at_least(ordered: list[float], value: float) -> int:
    """bisect_left: the index of the first item >= value."""
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if ordered[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _first_above(ordered: list[float], value: float) -> int:
    """bisect_right: the index of the first item > value."""
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if value < ordered[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


class ConnectEstimate:
    """EWMA and the 90th percentile of the last `window` successful connect times."""

    def __init__(self, alpha: float = 0.2, window: int = 32) -> None:
        self.alpha = alpha
        self.window = window
        self.ewma: float | None = None
        self.recent: list[float] = []  # a ring of the last `window` values
        self.next = 0  # where the ring's next value goes once it is full (its oldest)
        self.ordered: list[float] = []  # the same values, sorted: no sort per connection

    def observe(self, seconds: float) -> None:
        # (per connection: binary searches written out, which compiled code runs natively on
        # the list's floats, instead of calls to bisect and a deque)
        seconds = max(0.0, seconds)
        ewma = self.ewma
        self.ewma = seconds if ewma is None else self.alpha * seconds + (1 - self.alpha) * ewma
        recent, ordered = self.recent, self.ordered
        if len(recent) < self.window:
            recent.append(seconds)
        else:
            oldest = recent[self.next]
            recent[self.next] = seconds
            self.next = (self.next + 1) % self.window
            ordered.pop(_first_at_least(ordered, oldest))  # (pop: native; del was generic)
        ordered.insert(_first_above(ordered, seconds), seconds)  # after equal values

    def p90(self) -> float | None:
        ordered = self.ordered
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]

    def hedge_after(self, connect_timeout: float) -> float:
        """When to start a hedge for a connect to this backend."""
        cap = max(FLOOR, connect_timeout * CAP_FRACTION)
        p90 = self.p90()
        if self.ewma is None or p90 is None:
            return min(max(UNKNOWN, FLOOR), cap)
        usual = max(self.ewma * MULTIPLE, p90 * 2.0)
        return min(max(usual, FLOOR), cap)


class HedgeBudget:
    """Keeps hedging from turning into a load storm: at most `limit` hedges in flight per
    listener, and no hedging towards a backend whose hedged connects keep losing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.losing: Counter[str] = Counter()  # hedge target -> hedges lost in a row

    def may_hedge(self, target: str) -> bool:
        return self.in_flight < self.limit and self.losing[target] < LOSING_STREAK

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, target: str, target_won: bool | None) -> None:
        """A hedge towards `target` ended: it won (True), lost (False) or both failed (None)."""
        self.in_flight = max(0, self.in_flight - 1)
        if target_won:
            self.losing[target] = 0
        elif target_won is False:
            self.losing[target] += 1

    def target_succeeded(self, target: str) -> None:
        """A normal connect to `target` worked: it may be hedged towards again."""
        if self.losing.get(target):  # (get: no Counter.__missing__ call per connection)
            self.losing[target] = 0
