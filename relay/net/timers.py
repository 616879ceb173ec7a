"""A heap of one-shot timers with lazy cancellation.

Heap entries are ``(when, seq, timer)`` tuples, so ordering is done by C tuple
comparison, not a Python ``__lt__`` (a push costs no Python calls). A cancelled
timer stays in the heap until it reaches the top, or until cancelled entries make
up more than half of the heap: then the heap is rebuilt without them. Without that,
a long timer cancelled early (every session's idle timer, closed long before its
hour is up) would hold memory until its deadline.

The heap reads the time from its clock (time.monotonic unless given one: tests pass a
fake clock and move it, so no test sleeps for a timer).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Final

COMPACT_MIN: Final = 256  # below this many cancelled entries, never bother rebuilding
# (Final: compiled code calls these without a lookup in the module's dictionary)
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


def _nothing() -> None:
    pass


_NOTHING: Final = _nothing


class Timer:
    __slots__ = ("callback", "cancelled", "heap", "when")

    def __init__(self, when: float, callback: Callable[[], None], heap: TimerHeap) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.heap: TimerHeap | None = heap

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _NOTHING  # drop the reference: no session kept alive by a dead timer
        heap = self.heap
        if heap is not None:  # still queued (not popped)
            self.heap = None
            heap.cancelled += 1
            if heap.cancelled > COMPACT_MIN and heap.cancelled * 2 > len(heap.entries):
                heap.compact()


class TimerHeap:
    """Timers ordered by deadline; equal deadlines fire in the order they were added."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.entries: list[tuple[float, int, Timer]] = []
        self._seq = 0  # ties between equal deadlines: the order they were added
        self.cancelled = 0  # cancelled entries still in _heap

    def __len__(self) -> int:
        """Live (not cancelled) timers."""
        return len(self.entries) - self.cancelled

    def add(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback, self)
        seq = self._seq = self._seq + 1
        _heappush(self.entries, (when, seq, timer))
        return timer

    def add_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """A timer `delay` seconds from the clock's now."""
        return self.add(self.clock() + delay, callback)

    def compact(self) -> None:
        """Rebuild the heap without its cancelled entries."""
        self.entries = [entry for entry in self.entries if not entry[2].cancelled]
        heapq.heapify(self.entries)
        self.cancelled = 0

    def next_deadline(self) -> float | None:
        """Deadline of the earliest live timer, dropping cancelled ones on the way."""
        heap = self.entries
        while heap and heap[0][2].cancelled:
            _heappop(heap)
            self.cancelled -= 1
        return heap[0][0] if heap else None

    def pop_due(self, now: float | None = None) -> list[Timer]:
        """Remove and return every live timer whose deadline is <= now (the clock's time when
        not given), earliest first."""
        if now is None:
            now = self.clock()
        heap = self.entries
        due: list[Timer] = []
        while heap and heap[0][0] <= now:
            timer = _heappop(heap)[2]
            if timer.cancelled:
                self.cancelled -= 1
            else:
                timer.heap = None  # popped: a cancel from now on has nothing to account for
                due.append(timer)
        return due
