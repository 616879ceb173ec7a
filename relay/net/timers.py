"""A heap of one-shot timers with lazy cancellation.

Heap entries are ``(when, seq, timer)`` tuples, so ordering is done by C tuple
comparison, not a Python ``__lt__`` (a push costs no Python calls). A cancelled
timer stays in the heap until it reaches the top, or until cancelled entries make
up more than half of the heap: then the heap is rebuilt without them. Without that,
a long timer cancelled early (every session's idle timer, closed long before its
hour is up) would hold memory until its deadline.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

COMPACT_MIN = 256  # below this many cancelled entries, never bother rebuilding


def _nothing() -> None:
    pass


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
        self.callback = _nothing  # drop the reference: no session kept alive by a dead timer
        heap = self.heap
        if heap is not None:  # still queued (not popped)
            self.heap = None
            heap.cancelled_one()


class TimerHeap:
    """Timers ordered by deadline; equal deadlines fire in the order they were added."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled = 0  # cancelled entries still in _heap

    def __len__(self) -> int:
        """Live (not cancelled) timers."""
        return len(self._heap) - self._cancelled

    def add(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback, self)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def cancelled_one(self) -> None:
        self._cancelled += 1
        if self._cancelled > COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def next_deadline(self) -> float | None:
        """Deadline of the earliest live timer, dropping cancelled ones on the way."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return every live timer whose deadline is <= now, earliest first."""
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                self._cancelled -= 1
            else:
                timer.heap = None  # popped: a cancel from now on has nothing to account for
                due.append(timer)
        return due
