"""The dialer's hedge race on a fake clock (no network: the connects are socketpairs whose
outcome the test decides): which connect the session gets, what the hedge metrics say,
and that the hedge budget is given back whatever the outcome."""

from __future__ import annotations

import contextlib
import errno
import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from relay.config import parse_config
from relay.net import dialer
from relay.net.backends import Backend, BackendGroup
from relay.net.connect import PendingConnect
from relay.net.reactor import EPOLLOUT, Reactor
from relay.net.resolve import SockAddr
from relay.net.session import Dialed, SessionHost
from tests.support.fakeclock import FakeClock, advance_to


def advance(reactor: Reactor, seconds: float) -> None:
    advance_to(reactor, reactor.now + seconds)


class FakeHost(SessionHost):
    """What a dial needs of its listener: its loop and group, and connects that stay pending
    until the test decides (socketpairs; `connect` may be replaced)."""

    def __init__(self, group: BackendGroup, reactor: Reactor) -> None:
        self.group = group
        self.reactor = reactor
        self.sockets: list[socket.socket] = []
        self.connect: Callable[[SockAddr], tuple[socket.socket, int]] = self._socketpair
        self.shortages: list[OSError] = []

    def _socketpair(self, target: SockAddr) -> tuple[socket.socket, int]:
        ours, theirs = socket.socketpair()
        self.sockets.extend((ours, theirs))
        return ours, errno.EINPROGRESS

    def start_connect(self, target: SockAddr) -> tuple[socket.socket, int]:
        return self.connect(target)

    def out_of_fds(self, exc: OSError) -> None:
        self.shortages.append(exc)


class FakeSession(Dialed):
    """What a dial needs of its session; records what the dial did to it."""

    client_addr = "127.0.0.1:5555"  # (a property of Dialed's)

    def __init__(self, host: FakeHost, config: Any) -> None:
        self.host = host
        self.config = config
        self.opened = host.reactor.now
        self.hedged = False
        self.backend: Backend | None = None
        self.dial: Any = None
        self.got: tuple[Backend, Any] | None = None
        self.closed: str | None = None

    def connected(self, backend: Backend, server_end: Any, seconds: float) -> None:
        self.got = (backend, server_end)

    def close(self, cause: str, reset: bool = False, reset_client: bool = False,
              reset_backend: bool = False) -> None:
        self.closed = cause
        if self.dial is not None:
            self.dial.cancel(reset)


BACKENDS = ('[[listener.backend]]\nname = "a"\naddress = "127.0.0.1:1000"\n'
            '[[listener.backend]]\nname = "c"\naddress = "127.0.0.1:1001"\n')


@contextlib.contextmanager
def dialing(retry: str) -> Iterator[tuple[BackendGroup, Reactor, FakeSession, dialer.Dial]]:
    """A dial of a listener with backends "a" and c" and these [listener.retry] settings,
    not started yet; its connects are socketpairs whose outcome the test decides."""
    config = parse_config(
        '[[listener]]\nname = "l"\nlisten = "127.0.0.1:0"\nconnect_timeout = "1s"\n'
        f'[listener.health]\nkind = "tcp"\n[listener.retry]\n{retry}{BACKENDS}')
    (lc,) = config.listeners
    # a real one (compiled code takes no look-alike), never polled: its clock moved and its
    # timers fired by hand (tests/support/fakeclock.py)
    reactor = Reactor(clock=FakeClock(100.0))
    members = [Backend(bc, SockAddr(socket.AF_INET, ("127.0.0.1", 1000 + i)), lc)
               for i, bc in enumerate(lc.backends)]
    group = BackendGroup(reactor, lc, members, random.Random(7))  # type: ignore[arg-type]
    group.hedge_outcomes = {"primary_won": 0, "hedge_won": 0, "both_failed": 0}
    host = FakeHost(group, reactor)
    session = FakeSession(host, lc)
    dial = dialer.Dial(host, session)
    try:
        yield group, reactor, session, dial
    finally:
        session.close("test_over")
        for s in host.sockets:
            s.close()
        reactor.close()


@pytest.fixture
def race():
    with dialing('hedge = "20ms"\nattempts = 1\n') as (group, reactor, session, dial):
        dial.start()
        advance(reactor, 0.021)  # the hedge fires at 20 ms
        assert dial.primary is not None and dial.hedge is not None and session.hedged
        yield group, reactor, session, dial


def pending(reactor: Reactor, name: str) -> PendingConnect[Backend]:
    (found,) = [h for h in reactor.handlers.values()
                if isinstance(h, PendingConnect) and h.backend.name == name]
    return found


def fail(p: PendingConnect[Backend], err: int) -> None:
    p.watcher.connect_done(p, err)


def test_hedge_wins_the_primary_is_watched_on_and_its_failure_counted(race):
    group, reactor, session, _dial = race
    primary = pending(reactor, "a")
    hedge = pending(reactor, "c")
    hedge.on_event(hedge.fd, EPOLLOUT)  # SO_ERROR 0: connected
    assert session.got is not None and session.got[0].name == "c"
    assert group.hedge_outcomes["hedge_won"] == 1 and group.hedges.in_flight == 0
    assert isinstance(primary.watcher, dialer.Loser)
    advance(reactor, 1.0)  # the loser's deadline passes: a timeout of "a"
    a = group.by_name["a"]
    assert a.connect_errors["timeout"] == 1
    assert a.health.last_error == "timeout: Connection timed out"


def test_primary_wins_after_the_hedge_failed_and_the_budget_is_given_back(race):
    group, reactor, session, _dial = race
    fail(pending(reactor, "c"), errno.ECONNREFUSED)
    assert session.got is None and group.hedges.in_flight == 1  # the primary still races
    primary = pending(reactor, "a")
    primary.on_event(primary.fd, EPOLLOUT)
    assert session.got is not None and session.got[0].name == "a"
    assert group.hedges.in_flight == 0
    assert group.hedge_outcomes["primary_won"] == 1


def test_both_failed_then_the_plan_gives_up_after_its_attempts(race):
    group, reactor, session, _dial = race
    fail(pending(reactor, "a"), errno.ECONNREFUSED)
    assert session.closed is None  # the hedge carries the dial on
    fail(pending(reactor, "c"), errno.ECONNREFUSED)
    assert group.hedge_outcomes["both_failed"] == 1 and group.hedges.in_flight == 0
    assert session.closed == "no_backend"  # attempts = 1 (a hedge is not an attempt of its own)
    assert all(b.connect_errors["refused"] == 1 for b in group.backends)


def test_the_client_leaving_during_the_race_closes_both_connects(race):
    group, reactor, session, _dial = race
    session.close("client_reset")
    assert not [h for h in reactor.handlers.values() if isinstance(h, PendingConnect)]
    assert group.hedges.in_flight == 0 and sum(group.hedge_outcomes.values()) == 0


def test_no_hedge_timer_is_left_while_the_dial_waits_a_backoff_step():
    """Both backends refuse before the hedge delay: the dial waits a backoff step with no
    connect pending, so no timer of a hedge of the failed connects may still be set."""
    retry = 'hedge = "20ms"\nattempts = 3\ndeadline = "10s"\n'
    with dialing(retry) as (_group, reactor, session, dial):
        dial.start()
        fail(pending(reactor, "a"), errno.ECONNREFUSED)
        fail(pending(reactor, "c"), errno.ECONNREFUSED)
        assert dial.wait_timer is not None and session.closed is None  # a backoff step
        live = [t for _, _, t in reactor._timers.entries if not t.cancelled]
        assert dial._start_hedge not in [t.callback for t in live]


@pytest.mark.parametrize("err, pauses", [(errno.EMFILE, True), (errno.ENFILE, True),
                                         (errno.EINVAL, False)])
def test_a_connect_that_gets_no_socket_closes_the_session_and_only_a_shortage_pauses(err,
                                                                                   pauses):
    """No socket to be had (EMFILE...) rests every listener, as at accept; any other OSError
    from the connect's start (an address the C connect refuses: a bug, never a client's
    doing) closes the session without stopping the accepts."""
    with dialing("attempts = 1\n") as (_group, _reactor, session, dial):

        def refuse(target: SockAddr) -> tuple[socket.socket, int]:
            raise OSError(err, "refused by the test")

        session.host.connect = refuse
        dial.start()
        assert session.closed == "local_error"
        assert [e.errno for e in session.host.shortages] == ([err] if pauses else [])
