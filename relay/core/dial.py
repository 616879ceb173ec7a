"""How a session gets its backend connection: which backend to try, when to wait, when to
give up, and whether and when to hedge. Pure: the candidates come from the backend group,
`now` and the RNG are passed in, and each step is returned as a value; relay/net/dialer.py
carries the steps out.

The rules (product.md §4, retries):
- an untried candidate is tried at once; a backoff step is waited only before trying again
  a backend this session tried already;
- at most `attempts` connects, none started after `deadline` (counted from the accept);
  each connect is bounded by `connect_timeout` and by what is left of the deadline;
- while no backend is available, each candidate passes its last-resort gate (the group's
  `choose` does that); a client whose every gate is closed is held until the first opens,
  if it opens within the deadline;
- one hedge per session: when the first connect is still pending after `hedge_after`
  (fixed, or from the backend's usual connect time), a second connect to the next
  candidate races it; the first to complete wins.
"""

from __future__ import annotations

import random
from typing import Final, Generic, Protocol, TypeVar

from mypy_extensions import mypyc_attr

from relay.config.model import HEDGE_AUTO
from relay.core.backoff import Backoff
from relay.core.hedge import ConnectEstimate, HedgeBudget

MIN_WAIT: Final = 0.001  # a timer is never set in the past nor at "now": the loop turns first


class Named(Protocol):
    @property
    def name(self) -> str: ...


B = TypeVar("B", bound=Named)


@mypyc_attr(allow_interpreted_subclasses=True)  # the plan's tests stand in for a group
class Candidates(Generic[B]):
    """The backend group's side of the plan: which backend is next (relay.net.backends'
    BackendGroup). A base class, not a protocol, so that the compiled plan calls these
    through the vtable, not by name (bench/NOTES.md)."""

    __slots__ = ()

    def choose(self, tried: list[B], untried_only: bool = False,
               last_resort: bool = True) -> B | None:
        raise NotImplementedError

    def next_gate_opening(self) -> float | None:
        raise NotImplementedError

    def can_hedge_from(self, backend: B) -> bool:
        raise NotImplementedError


class Connect(Generic[B]):
    """Step: connect to `backend`; the attempt fails with a timeout at `until`."""

    __slots__ = ("backend", "until")

    def __init__(self, backend: B, until: float) -> None:
        self.backend = backend
        self.until = until


class Wait:
    """Step: hold the client until `until`, then ask the plan again (DialPlan.next)."""

    __slots__ = ("until",)

    def __init__(self, until: float) -> None:
        self.until = until


Step = Connect[B] | Wait | None  # None: give up (no backend)


class DialPlan(Generic[B]):
    """One session's connect attempts."""

    __slots__ = ("attempts", "backoff", "backoffs", "candidates", "connect_timeout", "deadline",
                 "hedge", "hedged", "max_attempts", "tried")

    def __init__(self, candidates: Candidates[B], opened: float, attempts: int, deadline: float,
                 connect_timeout: float, backoff: Backoff, hedge: float | None) -> None:
        self.candidates = candidates
        self.deadline = opened + deadline
        self.max_attempts = attempts
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.hedge = hedge  # seconds, HEDGE_AUTO, or None (off)
        self.tried: list[B] = []
        self.attempts = 0
        self.backoffs = 0  # backoff steps waited before trying a backend again
        self.hedged = False

    def next(self, now: float) -> Step[B]:
        """The first attempt, or the one after a Wait."""
        backend = self.candidates.choose(self.tried)
        if backend is None:
            # nothing available and every last-resort gate closed: wait for the first to
            # open (a check may also make a backend available meanwhile) within the deadline
            opens = self.candidates.next_gate_opening()
            if opens is not None and opens < self.deadline:
                return Wait(max(opens, now + MIN_WAIT))
            return None
        return self._connect(backend, now)

    def failed(self, now: float, rng: random.Random) -> Step[B]:
        """The last attempt failed (and no hedge is still racing)."""
        if self.attempts < self.max_attempts:
            untried = self.candidates.choose(self.tried, untried_only=True)
            if untried is not None:
                return self._connect(untried, now)
            delay = self.backoff.delay(self.backoffs, rng)
            if now + delay < self.deadline:
                self.backoffs += 1
                return Wait(now + delay)
        return None

    def _connect(self, backend: B, now: float) -> Connect[B]:
        self.tried.append(backend)
        self.attempts += 1
        return Connect(backend, now + max(MIN_WAIT, min(self.connect_timeout, self.deadline - now)))

    def hedge_after(self, backend: B, estimate: ConnectEstimate) -> float | None:
        """Seconds after which a connect to `backend` still pending is hedged; None: never."""
        if self.hedged or self.hedge is None or not self.candidates.can_hedge_from(backend):
            return None
        if self.hedge == HEDGE_AUTO:
            return estimate.hedge_after(self.connect_timeout)
        return self.hedge

    def hedge_target(self, pending: B, budget: HedgeBudget) -> B | None:
        """The backend a hedge of the pending connect to `pending` goes to; None: no hedge.
        Only an available backend (no last-resort gate) the budget allows."""
        if self.hedged:
            return None
        candidate = self.candidates.choose(self.tried, last_resort=False)
        if candidate is None or candidate is pending or not budget.may_hedge(candidate.name):
            return None
        return candidate

    def hedging(self, target: B) -> None:
        """The hedge to `target` started."""
        self.hedged = True
        self.tried.append(target)
