"""Long work on the loop, a slice at a time.

A job is a generator; the loop runs it for at most `budget` seconds, then serves every
socket that is ready before the next slice. No session waits for a job longer than one
slice, whatever the job's total cost (a /metrics render of 1,000 backends, say).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final, Generic, TypeVar

from relay.logs import log
from relay.net.reactor import Reactor

T = TypeVar("T")

BUDGET: Final = 0.004  # seconds of a job per turn of the loop


class SlicedJob(Generic[T]):
    """Runs `steps` to its end on `reactor`, a slice per turn; `done(results, error)` gets
    every non-None value the steps yielded (or the exception that ended them)."""

    def __init__(self, reactor: Reactor, steps: Iterator[T | None],
                 done: Callable[[list[T], BaseException | None], None],
                 budget: float = BUDGET) -> None:
        self.reactor = reactor
        self.steps = steps
        self.done = done
        self.budget = budget
        self.results: list[T] = []
        self.running = True
        reactor.call_soon(self._slice)

    def cancel(self) -> None:
        self.running = False

    def _slice(self) -> None:
        if not self.running:
            return
        clock = time.perf_counter  # the loop's `now` does not move inside a turn
        end = clock() + self.budget
        try:
            for value in self.steps:
                if value is not None:
                    self.results.append(value)
                if clock() >= end:
                    self.reactor.call_soon(self._slice)
                    return
        except Exception as exc:  # a bug in a job: said once, and its waiters are answered
            log.exception("internal_error", exc, where="sliced job")
            self.running = False
            self.done([], exc)
            return
        self.running = False
        self.done(self.results, None)
