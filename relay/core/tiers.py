"""Which tier serves new sessions, with the failback policy. Pure: `now` is passed in.

The *best* tier is the lowest tier with a backend that is available (up, ready,
not suspect). The *serving* tier is where new sessions go:

- it moves up (failover) at once when the serving tier has nothing available;
- it moves back down (failback) to a better tier only when the policy allows:
  `auto` once that tier has been available without a break for `failback_delay`,
  `manual` only by an operator's `failback()`.

So a flapping primary cannot make sessions bounce: every break restarts its
failback_delay.

After a failback, `DrainSchedule` says when the sessions left on higher tiers close
(drain_backup_after), and `counts_as_failover` which changes the failover counter counts.
relay/net/backends.py only carries these decisions out (a timer, closing sessions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TierChange:
    old: int | None
    new: int | None
    cause: str  # "failover", "failback", "operator", "no backend", "recovered", "start", "leader"

    @property
    def back_down(self) -> bool:
        """New sessions moved to a better tier (a failback, automatic or by the operator)."""
        return self.new is not None and self.old is not None and self.new < self.old


def counts_as_failover(change: TierChange) -> bool:
    """Every move of the serving tier counts, except the first choice at start."""
    return change.old is not None or change.cause != "start"


class DrainSchedule:
    """drain_backup_after: when, after a failback, the sessions still on a tier above the
    serving one are closed. `at` is the pending drain's time (None: none pending).

    A later failback starts the grace again. A reload keeps a pending drain's time: a
    failback the new settings cause only brings it earlier (the earlier drain wins), and
    drain_backup_after turned off cancels it."""

    def __init__(self, after: float | None) -> None:
        self.after = after
        self.at: float | None = None

    def tier_changed(self, change: TierChange, now: float) -> None:
        if change.back_down and self.after is not None:
            self.at = now + self.after

    def reload(self, after: float | None) -> float | None:
        """A reload starts: take the new setting; the pending drain's time is returned, to
        hand to `keep` once the new settings have re-evaluated the tiers."""
        pending, self.at = self.at, None
        self.after = after
        return pending

    def keep(self, pending: float | None) -> None:
        if pending is None or self.after is None:
            return
        if self.at is None or pending < self.at:
            self.at = pending

    def due(self, now: float, serving: int | None) -> int | None:
        """At or after `at`: the tier whose higher tiers are drained now (consumed: once);
        None when nothing is to be drained (not due, or no tier serves)."""
        if self.at is None or now < self.at:
            return None
        self.at = None
        return serving


class TierSelector:
    def __init__(self, failback: str = "auto", failback_delay: float = 10.0) -> None:
        if failback not in ("auto", "manual"):
            raise ValueError(f"unknown failback policy {failback!r}")
        self.failback = failback
        self.failback_delay = failback_delay
        self.serving: int | None = None
        self._available_since: dict[int, float] = {}
        self._started = False

    def update(self, now: float, available_tiers: Iterable[int]) -> TierChange | None:
        """Re-evaluate with the tiers that have an available backend now."""
        available = set(available_tiers)
        for tier in list(self._available_since):
            if tier not in available:
                del self._available_since[tier]  # a break restarts its failback delay
        for tier in available:
            self._available_since.setdefault(tier, now)
        best = min(available) if available else None
        old = self.serving
        if not self._started:  # at start the best tier serves: nothing to fail back from
            self._started = True
            self.serving = best
            return None if best is None else TierChange(None, best, "start")
        if best is None:
            if old is None:
                return None
            self.serving = None
            return TierChange(old, None, "no backend")
        if old is None:
            self.serving = best
            return TierChange(None, best, "recovered")
        if old not in available:
            # The serving tier is gone: a higher tier first (failing over to a lower one
            # here would skip failback_delay or the operator); a lower one only if alone.
            higher = [t for t in available if t > old]
            self.serving = min(higher) if higher else best
            return TierChange(old, self.serving, "failover")
        if best < old and self.failback == "auto" and self._stable(best, now):
            self.serving = best
            return TierChange(old, best, "failback")
        return None

    def _stable(self, tier: int, now: float) -> bool:
        since = self._available_since.get(tier)
        # the same sum as next_deadline's: at that very time the failback is due (now - since
        # can round below the delay, and the timer would fire again and again at that time)
        return since is not None and now >= since + self.failback_delay

    def next_deadline(self) -> float | None:
        """When `update` should run again on its own: a pending auto failback's due time."""
        if self.failback != "auto" or self.serving is None:
            return None
        better = [t for t in self._available_since if t < self.serving]
        if not better:
            return None
        return self._available_since[min(better)] + self.failback_delay

    def manual_failback(self, now: float) -> TierChange:
        """Operator: move new sessions to the best available tier now. Raises if tier 0
        is not available (the admin API answers 409)."""
        if 0 not in self._available_since:
            raise FailbackRefused("tier 0 has no backend up and ready")
        old = self.serving
        self.serving = 0
        return TierChange(old, 0, "operator")


class FailbackRefused(Exception):
    pass
