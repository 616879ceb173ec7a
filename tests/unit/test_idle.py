"""Idle timeouts on a fake clock: the real Session in a real RelayServer closes after its idle
timeout, never before, at most one slot late, and an active one waits on; and the slots
(relay/net/idle.py) under churn: nothing piles up, one timer at a time."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from relay.config import parse_config
from relay.net.idle import IdleSlots, slot_length
from relay.net.reactor import Reactor
from relay.net.server import RelayServer
from relay.net.timers import Timer
from tests.conftest import one_listener
from tests.support.fakeclock import FakeClock, advance, run_until
from tests.support.relayproc import toml_config


class FakeReactor:
    """A real Reactor on a fake clock, with the advance_to the slot tests below use."""

    made: ClassVar[list[FakeReactor]] = []  # closed after each test

    def __init__(self) -> None:
        self.clock = FakeClock(1000.0)
        self.reactor = Reactor(clock=self.clock)
        FakeReactor.made.append(self)

    @property
    def now(self) -> float:
        return self.reactor.now

    @property
    def timers(self) -> Any:
        return self.reactor._timers

    def call_at(self, when: float, callback: Any) -> Timer:
        return self.reactor.call_at(when, callback)

    def advance_to(self, when: float) -> None:
        advance(self.reactor, self.clock, when - self.clock.now)


@pytest.fixture(autouse=True)
def _close_reactors() -> Iterator[None]:
    yield
    while FakeReactor.made:
        FakeReactor.made.pop().reactor.close()


# -- the real Session ----------------------------------------------------------------------

def readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


class LoopRelay:
    """A RelayServer whose loop the test turns on a fake clock, in front of one backend
    socket the test holds."""

    def __init__(self, idle_timeout: str) -> None:
        self.backend = socket.create_server(("127.0.0.1", 0))
        port = self.backend.getsockname()[1]
        self.clock = FakeClock()
        config = parse_config(toml_config(one_listener(port, idle_timeout=idle_timeout)))
        self.server = RelayServer(config, admin=False, clock=self.clock)
        self.server.open()
        self.server.start()
        self.reactor = self.server.reactor
        sock = self.server.by_name["test"].sock
        assert sock is not None
        self.port = sock.getsockname()[1]
        self.socks: list[socket.socket] = [self.backend]

    def session(self) -> tuple[socket.socket, socket.socket, Any]:
        """A client relayed to the backend: (client, backend side, the Session)."""
        client = socket.create_connection(("127.0.0.1", self.port))
        self.socks.append(client)
        run_until(self.reactor, lambda: readable(self.backend))
        far, _ = self.backend.accept()
        self.socks.append(far)
        self.exchange(client, far)
        (session,) = self.server.sessions
        return client, far, session

    def exchange(self, client: socket.socket, far: socket.socket) -> None:
        client.sendall(b"x")
        run_until(self.reactor, lambda: readable(far))
        assert far.recv(16) == b"x"

    def advance(self, seconds: float) -> None:
        advance(self.reactor, self.clock, seconds)

    def close(self) -> None:
        self.server.close()
        for sock in self.socks:
            sock.close()


@pytest.fixture
def loop_relay() -> Iterator[Any]:
    made: list[LoopRelay] = []

    def make(idle_timeout: str) -> LoopRelay:
        made.append(LoopRelay(idle_timeout))
        return made[-1]

    yield make
    for relay in made:
        relay.close()


def test_a_quiet_session_closes_at_its_idle_timeout_never_before(loop_relay):
    relay = loop_relay("300ms")
    client, _far, session = relay.session()
    quiet_from = relay.clock.now
    relay.advance(0.299)
    assert not readable(client) and not session.cause
    relay.advance(slot_length(0.3) + 0.001)  # at most one slot late
    assert session.cause == "idle_timeout"
    assert 0.3 <= relay.reactor.now - quiet_from <= 0.3 + slot_length(0.3) + 0.001
    run_until(relay.reactor, lambda: readable(client))
    assert client.recv(16) == b""
    assert len(relay.server.idle) == 0


def test_an_active_session_is_not_closed_and_closes_once_quiet(loop_relay):
    relay = loop_relay("400ms")
    client, far, session = relay.session()
    for _ in range(8):  # 1.6 s of traffic, never 400 ms quiet
        relay.advance(0.2)
        relay.exchange(client, far)
        assert not session.cause
    quiet_from = relay.clock.now
    relay.advance(0.399)
    assert not session.cause
    relay.advance(slot_length(0.4) + 0.001)
    assert session.cause == "idle_timeout"
    assert relay.reactor.now - quiet_from >= 0.4


def test_traffic_from_the_backend_alone_keeps_a_session(loop_relay):
    relay = loop_relay("400ms")
    client, far, session = relay.session()
    for _ in range(5):
        relay.advance(0.3)
        far.sendall(b"y")
        run_until(relay.reactor, lambda: readable(client))
        assert client.recv(16) == b"y"
    assert not session.cause


# -- the slots, with sessions that do what Session.idle_due does --------------------------

class FakeSession:
    """What Session does in idle_due: close when quiet for `idle`, else join again."""

    def __init__(self, slots: IdleSlots, reactor: FakeReactor, idle: float) -> None:
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


def test_a_quiet_session_closes_after_its_timeout_at_most_one_slot_late():
    reactor = FakeReactor()
    slots = IdleSlots(reactor.reactor)
    session = FakeSession(slots, reactor, idle=0.3)
    reactor.advance_to(1000.299)
    assert session.closed_at is None
    reactor.advance_to(1001.0)
    assert session.closed_at is not None
    assert 1000.3 <= session.closed_at <= 1000.3 + slot_length(0.3) + 1e-9


def test_an_active_session_is_not_closed_and_closes_once_it_goes_quiet():
    reactor = FakeReactor()
    slots = IdleSlots(reactor.reactor)
    session = FakeSession(slots, reactor, idle=1.0)
    for step in range(1, 50):  # bytes every 100 ms for ~5 s
        reactor.advance_to(1000.0 + step * 0.1)
        session.last_active = reactor.now
        assert session.closed_at is None
    quiet_from = session.last_active
    reactor.advance_to(quiet_from + 5)
    assert session.closed_at is not None
    assert quiet_from + 1.0 <= session.closed_at <= quiet_from + 1.0 + slot_length(1.0) + 1e-9


def test_a_closed_session_leaves_its_slot_and_is_never_asked_again():
    reactor = FakeReactor()
    slots = IdleSlots(reactor.reactor)
    session = FakeSession(slots, reactor, idle=0.5)
    session.close()
    assert session.idle_slot is None and len(slots) == 0
    reactor.advance_to(1010.0)
    assert session.closed_at is None


def test_churn_of_short_sessions_under_a_long_idle_timeout_leaves_nothing_behind():
    # 20,000 sessions of a few ms each, idle_timeout 1 h: slots and their queue stay small
    reactor = FakeReactor()
    slots = IdleSlots(reactor.reactor)
    for _ in range(20_000):
        reactor.advance_to(reactor.now + 0.005)
        FakeSession(slots, reactor, idle=3600.0).close()
    assert len(slots) == 0
    assert len(slots.slots) <= 3600 / slot_length(3600.0) + 2
    assert len(slots._due) == len(slots.slots)
    reactor.advance_to(reactor.now + 7200)  # their times come and go: all dropped
    assert slots.slots == {} and slots._due == []
    assert len(reactor.timers) == 0


def test_many_sessions_with_different_timeouts_each_close_in_time():
    reactor = FakeReactor()
    slots = IdleSlots(reactor.reactor)
    sessions = []
    for i in range(300):
        reactor.advance_to(reactor.now + 0.001 * (i % 7))
        sessions.append(FakeSession(slots, reactor, idle=0.05 + (i % 13) * 0.37))
    reactor.advance_to(reactor.now + 10)
    for s in sessions:
        assert s.closed_at is not None
        due = s.last_active + s.idle
        assert due <= s.closed_at <= due + slot_length(s.idle) + 1e-9


def test_busy_sessions_rejoining_keep_one_timer_and_fire_once_per_slot():
    # active sessions rejoin a later slot from inside _fire: that must not leave a second
    # timer behind (each stray timer re-armed itself: the work grew without bound)
    reactor = FakeReactor()
    fires = [0]

    class Counting(IdleSlots):
        def _fire(self) -> None:
            fires[0] += 1
            super()._fire()

    slots = Counting(reactor.reactor)
    sessions = [FakeSession(slots, reactor, idle=1.0) for _ in range(200)]
    start = reactor.now
    for step in range(1, 51):  # 5 s, every session active every 100 ms
        reactor.advance_to(start + step * 0.1)
        for s in sessions:
            s.last_active = reactor.now
        assert len(reactor.timers) <= 1
    assert all(s.closed_at is None for s in sessions)
    assert fires[0] <= 5.0 / slot_length(1.0) + 2  # at most once per slot time that passed
