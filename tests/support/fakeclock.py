"""A clock tests move by hand, and a reactor turned on it: timers fire without sleeping.

    clock = FakeClock()
    reactor = Reactor(clock=clock)
    reactor.call_later(30.0, fired)
    advance(reactor, clock, 30.0)  # fires now, in microseconds

`advance` moves the clock to each due timer in turn (so a timer sees the time it was due
at, as in production, and timers armed by timers fire in order) and turns the loop with
a poll timeout of 0 between them: a fake-clock test never waits on the reactor's poll.
Real sockets still work on such a reactor; `run_until` turns it while real I/O from
other threads arrives, with the clock standing still.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relay.net.reactor import Reactor

SETTLE_TURNS = 10_000  # a loop that stays busy this long is a bug in the test or the code


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock does not go back"
        self.now += seconds


def settle(reactor: Reactor) -> int:
    """Turn the loop (poll timeout 0) until a turn does nothing; the turns it took."""
    for turns in range(1, SETTLE_TURNS + 1):
        if not reactor.run_once(0.0):
            return turns
    raise AssertionError("the loop never went idle")


def advance(reactor: Reactor, clock: FakeClock, seconds: float) -> None:
    """Move the clock `seconds` forward, firing every timer due on the way at its time."""
    end = clock.now + seconds
    settle(reactor)
    while True:
        deadline = reactor.next_deadline()
        if deadline is None or deadline > end:
            break
        clock.now = max(clock.now, deadline)
        settle(reactor)
    clock.now = end
    settle(reactor)


def run_until(reactor: Reactor, predicate: Callable[[], object], timeout: float = 10.0,
              step: float = 0.01) -> None:
    """Turn the loop until predicate holds, waiting on real I/O up to `step` per turn; the
    fake clock does not move. Fails after `timeout` real seconds."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "condition not reached"
        reactor.run_once(step)
