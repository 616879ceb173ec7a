"""A clock tests move by hand, and real Reactors on it: timers fire without sleeping.

Compiled (mypyc) modules check their arguments' classes, so a duck-typed stand-in is refused
where a Reactor is declared: the tests use real Reactors on a FakeClock, in one of two ways.

Turned: the loop runs, with a poll timeout of 0 (real sockets still work).

    clock = FakeClock()
    reactor = Reactor(clock=clock)
    reactor.call_later(30.0, fired)
    advance(reactor, clock, 30.0)  # fires now, in microseconds

`advance` moves the clock to each due timer in turn (so a timer sees the time it was due
at, as in production, and timers armed by timers fire in order) and turns the loop
between them: a fake-clock test never waits on the reactor's poll. `run_until` turns it
while real I/O from other threads arrives, with the clock standing still.

By hand: the loop never runs; `advance_to` fires the due timers and `turn` the call_soon
callbacks. The `reactors` fixture (tests/conftest.py) hands out such reactors (each holds an
epoll fd) and closes them after the test.
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


# -- a turned loop --------------------------------------------------------------------------

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


# -- a loop driven by hand ------------------------------------------------------------------

class Reactors:
    """Hands out reactors on fake clocks and closes them all at the end of a test."""

    def __init__(self) -> None:
        self.made: list[Reactor] = []

    def __call__(self, now: float) -> Reactor:
        reactor = Reactor(clock=FakeClock(now))
        self.made.append(reactor)
        return reactor

    def close(self) -> None:
        for reactor in self.made:
            reactor.close()
        self.made.clear()


def advance_to(reactor: Reactor, when: float) -> int:
    """Move the clock to `when`, firing each timer due on the way at its deadline; how many fired."""
    clock = reactor.clock
    timers = reactor._timers
    fired = 0
    while True:
        deadline = timers.next_deadline()
        if deadline is None or deadline > when:
            break
        reactor.now = deadline
        if isinstance(clock, FakeClock):
            clock.now = deadline
        for timer in timers.pop_due(deadline):
            timer.callback()
            fired += 1
    reactor.now = when
    if isinstance(clock, FakeClock):
        clock.now = when
    return fired


def turn(reactor: Reactor) -> bool:
    """Run the call_soon callbacks queued so far (not those they queue); False when none were."""
    soon = reactor._soon
    callbacks = list(soon)
    soon.clear()
    for callback in callbacks:
        callback()
    return bool(callbacks)
