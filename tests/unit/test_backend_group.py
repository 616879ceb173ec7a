"""BackendGroup on a fake clock, without sockets: failback waits failback_delay, drains come at
drain_backup_after (and a reload keeps, brings earlier or cancels them), failovers are
counted, sessions are closed when the decisions say so. Every time checked is exact.

Health results are handed to the group as its checkers would (check_result); the checkers
themselves are replaced by a stub that runs nothing (their timing is relay/net/checker.py's).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from relay.config import parse_config
from relay.config.model import Address, ListenerConfig
from relay.core.tiers import FailbackRefused
from relay.net import backends as backends_module
from relay.net.backends import Backend, BackendGroup
from relay.net.reactor import Reactor
from relay.net.resolve import SockAddr
from tests.support.fakeclock import FakeClock, advance
from tests.support.relayproc import toml_config

RISE, FALL = 2, 2


class StubChecker:
    """Stands in for relay.net.checker.Checker: the test reports the results."""

    def __init__(self, *args: object) -> None:  # Checker's arguments, unused
        self.in_flight = False
        self.scheduled: list[float] = []
        self.stopped = False

    def schedule(self, delay: float) -> None:
        self.scheduled.append(delay)

    def stop(self) -> None:
        self.stopped = True

    def check_now(self) -> None:
        pass


class StubSession:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.closed: tuple[str, float] | None = None

    def close(self, cause: str, reset: bool = False) -> None:
        self.closed = (cause, self.clock.now)


def listener_config(**listener: object) -> ListenerConfig:
    settings: dict[str, object] = {
        "name": "db", "listen": "127.0.0.1:0", "failback_delay": "1s",
        "health": {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                   "interval": 0.2, "timeout": 0.1, "rise": RISE, "fall": FALL},
        "backends": [{"name": "primary", "address": "127.0.0.1:1", "tier": 0},
                     {"name": "backup", "address": "127.0.0.1:2", "tier": 1}],
    }
    settings.update(listener)
    return parse_config(toml_config([settings])).listeners[0]


def targets(lc: ListenerConfig) -> list[tuple[object, SockAddr]]:
    return [(bc, SockAddr(socket.AF_INET, ("127.0.0.1", bc.address.port))) for bc in lc.backends]


class World:
    def __init__(self, **listener: object) -> None:
        import random
        self.clock = FakeClock()
        self.reactor = Reactor(clock=self.clock)
        lc = listener_config(**listener)
        self.group = BackendGroup(self.reactor, lc,
                                  [Backend(bc, t, lc) for bc, t in targets(lc)],  # type: ignore[arg-type]
                                  random.Random(1))
        self.primary = self.group.by_name["primary"]
        self.backup = self.group.by_name["backup"]
        for _ in range(RISE):  # both up at start: tier 0 serves
            self.ok(self.primary)
            self.ok(self.backup)

    def ok(self, backend: Backend) -> None:
        self.group.check_result(backend, True, "")

    def fail(self, backend: Backend) -> None:
        for _ in range(FALL):
            self.group.check_result(backend, False, "connection refused")

    def recover(self, backend: Backend) -> None:
        for _ in range(RISE):
            self.ok(backend)

    def advance(self, seconds: float) -> None:
        advance(self.reactor, self.clock, seconds)

    @property
    def serving(self) -> int | None:
        return self.group.tiers.serving

    def session_on(self, backend: Backend) -> StubSession:
        session = StubSession(self.clock)
        backend.sessions.add(session)  # type: ignore[arg-type]
        return session

    def reload(self, **listener: object) -> None:
        lc = listener_config(**listener)
        self.group.reconfigure(lc, targets(lc))  # type: ignore[arg-type]

    def close(self) -> None:
        self.group.stop_checks()
        self.reactor.close()


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setattr(backends_module, "checker_class", StubChecker)
    made: list[World] = []

    def factory(**listener: object) -> World:
        world = World(**listener)
        made.append(world)
        return world

    yield factory
    for world in made:
        world.close()


def test_failover_is_at_once_and_auto_failback_waits_exactly_failback_delay(make):
    w = make(failback_delay="1s")
    assert w.serving == 0 and w.group.failovers == 0  # the choice at start is no failover
    w.fail(w.primary)
    assert w.serving == 1 and w.group.failovers == 1
    w.advance(5.0)
    w.recover(w.primary)
    up_at = w.clock.now
    w.advance(0.999)
    assert w.serving == 1  # up, but not for failback_delay yet
    assert w.group.choose([]) is w.backup
    w.advance(0.001)
    assert w.serving == 0 and w.clock.now == up_at + 1.0
    assert w.group.choose([]) is w.primary
    assert w.group.failovers == 2  # a failback counts as a move too


def test_a_break_during_failback_delay_restarts_it(make):
    w = make(failback_delay="1s")
    w.fail(w.primary)
    w.recover(w.primary)
    w.advance(0.8)
    w.fail(w.primary)
    w.advance(0.5)
    w.recover(w.primary)
    back = w.clock.now
    w.advance(0.9)
    assert w.serving == 1
    w.advance(0.2)
    assert w.serving == 0 and w.clock.now >= back + 1.0


def test_manual_failback_only_by_the_operator(make):
    w = make(failback="manual", failback_delay=0)
    w.fail(w.primary)
    with pytest.raises(FailbackRefused):
        w.group.failback()
    w.recover(w.primary)
    w.advance(3600.0)
    assert w.serving == 1
    w.group.failback()
    assert w.serving == 0


@pytest.mark.parametrize("drain_after", ["500ms", "off"])
def test_drain_backup_after_closes_backup_sessions_after_its_grace(make, drain_after):
    w = make(failback_delay="300ms", drain_backup_after=drain_after)
    w.fail(w.primary)
    on_backup = w.session_on(w.backup)
    on_primary = w.session_on(w.primary)
    w.recover(w.primary)
    w.advance(0.3)
    assert w.serving == 0
    failback_at = w.clock.now
    w.advance(0.499)
    assert on_backup.closed is None  # not at failback: after its grace
    w.advance(3600.0)
    if drain_after == "off":
        assert on_backup.closed is None  # "off" never cuts
    else:
        assert on_backup.closed == ("drained_after_failback", failback_at + 0.5)
    assert on_primary.closed is None


def test_a_reload_during_the_grace_keeps_the_drain_time(make):
    w = make(failback_delay="300ms", drain_backup_after="1500ms")
    w.fail(w.primary)
    held = w.session_on(w.backup)
    w.recover(w.primary)
    w.advance(0.3)
    failback_at = w.clock.now
    w.advance(0.7)
    w.reload(failback_delay="300ms", drain_backup_after="1500ms")  # the same file, mid-grace
    w.advance(0.799)
    assert held.closed is None
    w.advance(0.001)
    assert held.closed == ("drained_after_failback", failback_at + 1.5)  # not 1.5 s after the reload


def test_a_reload_that_fails_back_keeps_the_earlier_of_two_drains(make):
    w = make(failback_delay="60s", drain_backup_after="10s")
    w.fail(w.primary)
    held = w.session_on(w.backup)
    w.recover(w.primary)
    w.group.failback()  # the operator: a drain at now + 10 s
    first = w.clock.now + 10.0
    w.fail(w.primary)  # fails over again; the drain stays pending
    w.recover(w.primary)
    w.advance(1.0)
    # the reload's failback would drain at now + 1 s, earlier: that one wins
    w.reload(failback_delay="0s", drain_backup_after="1s")
    assert w.serving == 0
    assert w.group.drain.at == w.clock.now + 1.0 < first
    w.advance(1.0)
    assert held.closed == ("drained_after_failback", w.clock.now)


def test_a_reload_never_postpones_a_pending_drain(make):
    w = make(failback_delay="60s", drain_backup_after="2s")
    w.fail(w.primary)
    held = w.session_on(w.backup)
    w.recover(w.primary)
    w.group.failback()
    due = w.clock.now + 2.0
    w.advance(1.0)
    w.reload(failback_delay="60s", drain_backup_after="30s")
    w.advance(1.0)
    assert held.closed == ("drained_after_failback", due)


def test_a_drain_scheduled_by_a_reload_is_cancelled_by_the_next_turning_it_off(make):
    w = make(failback_delay="60s", drain_backup_after="1500ms")
    w.fail(w.primary)
    held = w.session_on(w.backup)
    w.recover(w.primary)
    w.reload(failback_delay="0ms", drain_backup_after="1500ms")  # fails back, drain pending
    assert w.serving == 0 and w.group.drain.at is not None
    w.reload(failback_delay="0ms")  # drain_backup_after off: that drain must go
    w.advance(3600.0)
    assert held.closed is None
    assert w.reactor.next_deadline() is None  # no timer left behind either


@pytest.mark.parametrize("close_on_down", [True, False])
def test_close_on_down_closes_the_sessions_at_the_down_transition(make, close_on_down):
    w = make(close_on_down=close_on_down)
    held = w.session_on(w.primary)
    w.group.check_result(w.primary, False, "no answer")
    assert held.closed is None  # one failure of FALL
    w.group.check_result(w.primary, False, "no answer")
    assert held.closed == (("backend_down", w.clock.now) if close_on_down else None)
    assert w.group.choose([]) is w.backup


def test_a_session_that_tried_a_backend_a_reload_removed_retries_on_another(make):
    w = make()
    tried = [w.primary]  # its connect to "primary" is pending while the reload removes it
    w.reload(backends=[{"name": "backup", "address": "127.0.0.1:2", "tier": 1}])
    assert w.group.choose(tried, untried_only=True) is w.backup
    assert w.group.choose(tried) is w.backup


def test_a_backend_added_while_running_is_checked_and_a_candidate_at_once(make):
    w = make()  # balance = "first": the group keeps its candidate order until a change
    w.group.start_checks()
    assert w.group.choose([w.primary]) is w.backup
    lc = w.group.config
    extra = Backend(replace(lc.backends[0], name="extra", address=Address("127.0.0.1", 3)),
                    SockAddr(socket.AF_INET, ("127.0.0.1", 3)), lc)
    w.group.add_backend(extra)
    assert w.group.by_name["extra"] is extra
    assert w.group.choose([w.primary]) is extra  # tier 0, initial up: before the backup
    checker = extra.checker
    assert isinstance(checker, StubChecker)
    (delay,) = checker.scheduled
    assert 0 <= delay <= lc.health.interval
    with pytest.raises(ValueError):
        w.group.add_backend(extra)


def test_a_backend_added_while_checks_are_stopped_gets_no_checker(make):
    w = make()
    lc = w.group.config
    extra = Backend(replace(lc.backends[0], name="extra"), w.primary.target, lc)
    w.group.add_backend(extra)
    assert extra.checker is None  # start_checks gives it one with the others


def test_a_removed_backend_takes_no_new_session_and_its_sessions_finish(make):
    w = make()
    w.group.start_checks()
    held = w.session_on(w.primary)
    checker = w.primary.checker
    assert isinstance(checker, StubChecker)
    w.group.remove_backend(w.primary)
    assert checker.stopped and w.primary.checker is None
    assert "primary" not in w.group.by_name and w.primary not in w.group.backends
    assert w.serving == 1  # its tier has nothing left: the backups serve at once
    assert w.group.choose([]) is w.backup
    assert w.group.choose([w.primary]) is w.backup  # a session that had tried it retries
    assert held.closed is None
