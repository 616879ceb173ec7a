"""A real Reactor driven by hand on a fake clock, for unit tests of code that takes a Reactor.

Compiled (mypyc) modules check their arguments' classes, so a duck-typed stand-in is refused
where a Reactor is declared; a real Reactor that never runs its loop is what the tests use
instead: its `now` is set by hand, its timers and call_soon callbacks are fired by the helpers
below. Each one holds an epoll fd: the `reactors` fixture's list closes them.
"""

from __future__ import annotations

from relay.net.reactor import Reactor


class Reactors:
    """Hands out hand-driven reactors and closes them all at the end of a test."""

    def __init__(self) -> None:
        self.made: list[Reactor] = []

    def __call__(self, now: float) -> Reactor:
        reactor = Reactor()
        reactor.now = now
        self.made.append(reactor)
        return reactor

    def close(self) -> None:
        for reactor in self.made:
            reactor.close()
        self.made.clear()


def advance_to(reactor: Reactor, when: float) -> int:
    """Move the clock to `when`, firing each timer due on the way at its deadline; how many fired."""
    timers = reactor._timers
    fired = 0
    while True:
        deadline = timers.next_deadline()
        if deadline is None or deadline > when:
            break
        reactor.now = deadline
        for timer in timers.pop_due(deadline):
            timer.callback()
            fired += 1
    reactor.now = when
    return fired


def timer_count(reactor: Reactor) -> int:
    return len(reactor._timers)


def turn(reactor: Reactor) -> bool:
    """Run the call_soon callbacks queued so far (not those they queue); False when none were."""
    soon = reactor._soon
    callbacks = list(soon)
    soon.clear()
    for callback in callbacks:
        callback()
    return bool(callbacks)
