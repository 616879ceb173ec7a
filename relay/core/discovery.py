"""DNS discovery (product.md section 9): a backend with discover = "dns" stands for every
A/AAAA record of its name. Pure: what a new answer means for the backends it stands for.

Records that appear become backends, records that go are drained (no new sessions, open
ones finish), unchanged ones are kept with their health. An empty answer or a failed
lookup changes nothing (the last good answer stands); the first failure after a good
answer is logged, later ones only counted, until an answer comes again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_RECORDS = 64  # a name answering more than this: the first MAX_RECORDS (sorted) are used


def discovered_name(template: str, address: str) -> str:
    """The name of the backend that record `address` ("10.0.0.5:6379") of `template` becomes."""
    return f"{template}/{address}"


@dataclass(frozen=True)
class Diff:
    add: tuple[str, ...]  # addresses that became backends
    drain: tuple[str, ...]  # addresses whose backends leave (their sessions finish)
    keep: tuple[str, ...]  # unchanged: their backends keep their health

    @property
    def changed(self) -> bool:
        return bool(self.add or self.drain)


def diff(current: Iterable[str], answer: Iterable[str]) -> Diff:
    """Old set of addresses vs a new answer. An empty answer is no answer (keep all): a name
    that briefly has no records must not drain every backend at once."""
    old = sorted(set(current))
    new = sorted(set(answer))[:MAX_RECORDS]
    if not new:
        return Diff((), (), tuple(old))
    new_set, old_set = set(new), set(old)
    return Diff(tuple(a for a in new if a not in old_set),
                tuple(a for a in old if a not in new_set),
                tuple(a for a in old if a in new_set))


class LookupLog:
    """Failures logged once: the first failure after a good answer (or at start) says so;
    the next good answer ends the quiet period. Every failure is counted by the caller."""

    def __init__(self) -> None:
        self.failing = False

    def failed(self) -> bool:
        """A lookup failed: True when this one should be logged."""
        first = not self.failing
        self.failing = True
        return first

    def answered(self) -> bool:
        """A lookup answered: True when it ends a run of failures (worth a log line)."""
        recovered = self.failing
        self.failing = False
        return recovered


__all__ = ["MAX_RECORDS", "Diff", "LookupLog", "diff", "discovered_name"]
