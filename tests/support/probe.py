"""A steady stream of new client sessions, each recording who answered or what went wrong."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Probe:
    """A new session every `every` seconds; `ask()` opens it and returns who answered."""

    ask: Callable[[], object]
    every: float = 0.01
    # (started, finished, who answered or None, error)
    results: list[tuple[float, float, object, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                who = self.ask()
                self.results.append((t, time.monotonic(), who, ""))
            except OSError as exc:
                self.results.append((t, time.monotonic(), None, repr(exc)))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def errors(self, since: float = 0.0) -> list[tuple[float, float, object, str]]:
        """Failed sessions among those started at or after `since`. (A request in flight on
        the primary when it dies fails with it: close_on_down resets it on purpose.)"""
        return [r for r in self.results if r[3] and r[0] >= since]

    def first_served_by(self, who: object, after: float) -> float:
        """When the first session started after `after` and served by `who` got its answer."""
        return min(end for start, end, w, _ in self.results if start >= after and w == who)

    def served_by(self, who: object, after: float = 0.0) -> int:
        return sum(1 for start, _, w, _ in self.results if start >= after and w == who)
