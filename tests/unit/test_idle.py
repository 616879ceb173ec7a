"""Idle slots (relay/net/idle.py) with a fake clock: sessions close after their idle timeout,
never before, at most one slot late; active ones wait on; nothing piles up."""

from __future__ import annotations

from typing import Any

from relay.net.idle import IdleSlots, slot_length
from relay.net.reactor import Reactor
from tests.support.clock import advance_to, timer_count


class FakeSession:
    """What Session does in idle_due: close when quiet for `idle`, else join again."""

    def __init__(self, slots: IdleSlots, reactor: Reactor, idle: float) -> None:
        self.slots, self.reactor, self.idle = slots, reactor, idle
        self.idle_slot: set[Any] | None = None
        self.last_active = reactor.now
        self.closed_at: float | None = None
        slots.join(self, self.last_active + idle, idle)

    def idle_due(self, now: float) -> None:
        deadline = self.last_active + self.idle
        if now >= deadline:
            self.closed_at = now
        else:
            self.slots.join(self, deadline, self.idle)

    def close(self) -> None:
        IdleSlots.leave(self)


def test_a_quiet_session_closes_after_its_timeout_at_most_one_slot_late(reactors):
    reactor = reactors(1000.0)
    slots = IdleSlots(reactor)
    session = FakeSession(slots, reactor, idle=0.3)
    advance_to(reactor, 1000.299)
    assert session.closed_at is None
    advance_to(reactor, 1001.0)
    assert session.closed_at is not None
    assert 1000.3 <= session.closed_at <= 1000.3 + slot_length(0.3) + 1e-9


def test_an_active_session_is_not_closed_and_closes_once_it_goes_quiet(reactors):
    reactor = reactors(1000.0)
    slots = IdleSlots(reactor)
    session = FakeSession(slots, reactor, idle=1.0)
    for step in range(1, 50):  # bytes every 100 ms for ~5 s
        advance_to(reactor, 1000.0 + step * 0.1)
        session.last_active = reactor.now
        assert session.closed_at is None
    quiet_from = session.last_active
    advance_to(reactor, quiet_from + 5)
    assert session.closed_at is not None
    assert quiet_from + 1.0 <= session.closed_at <= quiet_from + 1.0 + slot_length(1.0) + 1e-9


def test_a_closed_session_leaves_its_slot_and_is_never_asked_again(reactors):
    reactor = reactors(1000.0)
    slots = IdleSlots(reactor)
    session = FakeSession(slots, reactor, idle=0.5)
    session.close()
    assert session.idle_slot is None and len(slots) == 0
    advance_to(reactor, 1010.0)
    assert session.closed_at is None


def test_churn_of_short_sessions_under_a_long_idle_timeout_leaves_nothing_behind(reactors):
    # 20,000 sessions of a few ms each, idle_timeout 1 h: slots and their queue stay small
    reactor = reactors(1000.0)
    slots = IdleSlots(reactor)
    for _ in range(20_000):
        advance_to(reactor, reactor.now + 0.005)
        FakeSession(slots, reactor, idle=3600.0).close()
    assert len(slots) == 0
    assert len(slots.slots) <= 3600 / slot_length(3600.0) + 2
    assert len(slots._due) == len(slots.slots)
    advance_to(reactor, reactor.now + 7200)  # their times come and go: all dropped
    assert slots.slots == {} and slots._due == []
    assert timer_count(reactor) == 0


def test_many_sessions_with_different_timeouts_each_close_in_time(reactors):
    reactor = reactors(1000.0)
    slots = IdleSlots(reactor)
    sessions = []
    for i in range(300):
        advance_to(reactor, reactor.now + 0.001 * (i % 7))
        sessions.append(FakeSession(slots, reactor, idle=0.05 + (i % 13) * 0.37))
    advance_to(reactor, reactor.now + 10)
    for s in sessions:
        assert s.closed_at is not None
        due = s.last_active + s.idle
        assert due <= s.closed_at <= due + slot_length(s.idle) + 1e-9


def test_busy_sessions_rejoining_keep_one_timer_and_fire_once_per_slot(reactors):
    # active sessions rejoin a later slot from inside _fire: that must not leave a second
    # timer behind (each stray timer re-armed itself: the work grew without bound)
    reactor = reactors(1000.0)
    fires = 0  # the slots' timers are the only ones: each one fired is one IdleSlots._fire
    slots = IdleSlots(reactor)
    sessions = [FakeSession(slots, reactor, idle=1.0) for _ in range(200)]
    start = reactor.now
    for step in range(1, 51):  # 5 s, every session active every 100 ms
        fires += advance_to(reactor, start + step * 0.1)
        for s in sessions:
            s.last_active = reactor.now
        assert timer_count(reactor) <= 1
    assert all(s.closed_at is None for s in sessions)
    assert fires <= 5.0 / slot_length(1.0) + 2  # at most once per slot time that passed
