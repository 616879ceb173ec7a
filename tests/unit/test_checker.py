"""relay/net/checker.py on a fake clock: when checks start, against a real listening socket."""

from __future__ import annotations

import gc
import random
import socket
from collections.abc import Iterator

import pytest

from relay.config.model import Address, BackendConfig, HealthConfig
from relay.core.health import HealthState
from relay.net.checker import Checker
from relay.net.reactor import Reactor
from relay.net.resolve import SockAddr
from tests.support.fakeclock import FakeClock, advance

INTERVAL = 2.0  # check_at's slots: 50 ms


class Backend:
    """What a Checker reads of its backend; notes the loop turn and time each check starts
    in (a check reads its target once, as it opens its socket)."""

    def __init__(self, reactor: Reactor, port: int) -> None:
        self.reactor = reactor
        self.config = BackendConfig("b", Address("127.0.0.1", port))
        self.health = HealthState(2, 3, INTERVAL, 30.0)
        self.addr = SockAddr(socket.AF_INET, ("127.0.0.1", port))
        self.starts: list[tuple[int, float]] = []

    @property
    def target(self) -> SockAddr:
        self.starts.append((self.reactor.iterations, self.reactor.now))
        return self.addr


@pytest.fixture
def server() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)  # never accepted: the kernel completes the handshakes a tcp check waits for
    yield s
    s.close()


def test_checks_due_close_together_start_in_the_same_turns(server: socket.socket) -> None:
    clock = FakeClock(1000.01)
    reactor = Reactor(clock=clock)
    rng = random.Random(3)
    results: list[bool] = []
    checkers, backends = [], []
    for i in range(20):
        backend = Backend(reactor, server.getsockname()[1])
        checker = Checker(reactor, backend, HealthConfig(interval=INTERVAL), "off", rng,
                          lambda ok, error: results.append(ok))
        checker.schedule(INTERVAL + i * 0.001)  # due 1002.010 to 1002.029: within one slot
        checkers.append(checker)
        backends.append(backend)
    try:
        advance(reactor, clock, INTERVAL + 0.2)
        firsts = [b.starts[0] for b in backends]
        assert all(at >= 1000.01 + INTERVAL + i * 0.001 for i, (_, at) in enumerate(firsts))
        # 20 checks due at 20 different times start in two turns (their slot and the next:
        # a random half go a slot later), not in 20
        assert len({turn for turn, _ in firsts}) == 2
        assert results == [True] * 20
    finally:
        for checker in checkers:
            checker.stop()
        reactor.close()


def test_a_stopped_checker_holds_no_reference_to_itself(server: socket.socket) -> None:
    """Its timers' callbacks are bound once (self._start_cb): a cycle while it runs, broken by
    stop(), so a stopped checker goes with its last reference even after gc.freeze()."""
    clock = FakeClock(1000.0)
    reactor = Reactor(clock=clock)
    checker = Checker(reactor, Backend(reactor, server.getsockname()[1]),
                      HealthConfig(interval=INTERVAL), "off", random.Random(1), lambda ok, e: None)
    try:
        checker.schedule(INTERVAL)
        advance(reactor, clock, INTERVAL * 1.1)  # a check started: its socket and its deadline timer
        checker.stop()
        held = [r for r in gc.get_referents(checker) if getattr(r, "__self__", None) is checker]
        assert held == []
    finally:
        checker.stop()
        reactor.close()
