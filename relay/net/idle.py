"""Idle deadlines for many sessions, in slots: no timer object per session.

A session's idle deadline is rounded up to the end of a slot whose length is
1/64 of its idle timeout (at least 5 ms, at most 10 s), so it closes at most that
late. Joining and leaving a slot is one set operation each. One reactor timer
serves the earliest slot. A per-session timer (the timer, its heap entry and its
bound callback) was about 250 bytes, most of what an idle session costs.

When a slot comes due (or is found empty at the head of the queue, and dropped),
each session in it is asked: quiet for its whole idle
timeout, it closes; otherwise it joins the slot of ``last_active + idle``.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, Final, Protocol

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from relay.net.reactor import Reactor
    from relay.net.timers import Timer

MIN_SLOT: Final = 0.005
MAX_SLOT: Final = 10.0
SLOTS_PER_TIMEOUT: Final = 64


class Idler(Protocol):
    idle_slot: set[Any] | None  # the slot the session is in


    def idle_due(self, now: float) -> None: ...


def slot_length(idle: float) -> float:
    return min(MAX_SLOT, max(MIN_SLOT, idle / SLOTS_PER_TIMEOUT))


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled: a test subclasses it (test_idle)
class IdleSlots:
    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.slots: dict[float, set[Any]] = {}
        self._due: list[float] = []  # heap of the slots' times
        self._timer: Timer | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        """Sessions waiting in a slot."""
        return sum(len(s) for s in self.slots.values())

    def join(self, session: Idler, deadline: float, idle: float) -> None:
        length = slot_length(idle)
        at = math.ceil(deadline / length) * length
        if at < deadline:  # rounding: never before the deadline itself
            at += length
        slot = self.slots.get(at)
        if slot is None:
            slot = self.slots[at] = set()
            heapq.heappush(self._due, at)
            self._arm(at)
        slot.add(session)
        session.idle_slot = slot

    def _arm(self, at: float) -> None:
        """One reactor timer, for the earliest slot: moved earlier when needed, never two."""
        if at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.reactor.call_at(at, self._fire)
            self._timer_at = at

    @staticmethod
    def leave(session: Idler) -> None:
        """The session closed. An emptied slot stays until its time: a slot is created, and
        its time queued, once."""
        slot = session.idle_slot
        if slot is not None:
            slot.discard(session)
            session.idle_slot = None

    def _fire(self) -> None:
        self._timer = None  # this was the one timer; sessions joining below may arm the next
        self._timer_at = math.inf
        now = self.reactor.now
        due = self._due
        while due and due[0] <= now:
            slot = self.slots.pop(heapq.heappop(due), None)
            for session in list(slot or ()):
                session.idle_slot = None
                session.idle_due(now)  # closes, or joins a later slot
        while due and not self.slots.get(due[0]):  # emptied: nothing to wake up for
            self.slots.pop(heapq.heappop(due), None)
        if due:
            self._arm(due[0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.slots.clear()
        self._due.clear()
