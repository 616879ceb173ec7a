"""A heap of one-shot timers with lazy cancellation (cancelled entries are skipped when popped)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


def _nothing() -> None:
    pass


class Timer:
    __slots__ = ("callback", "cancelled", "seq", "when")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _nothing  # drop the reference: no session kept alive by a dead timer

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when or (self.when == other.when and self.seq < other.seq)


class TimerHeap:
    """Timers ordered by deadline; equal deadlines fire in the order they were added."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def next_deadline(self) -> float | None:
        """Deadline of the earliest live timer, dropping cancelled ones on the way."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].when if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return every live timer whose deadline is <= now, earliest first."""
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0].when <= now:
            timer = heapq.heappop(heap)
            if not timer.cancelled:
                due.append(timer)
        return due
