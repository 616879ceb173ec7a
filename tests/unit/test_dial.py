"""The dial plan (relay/core/dial.py) on a fake clock in milliseconds: attempt order,
backoff, the deadline, held clients, and when to hedge. No sockets."""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field

from relay.config.model import HEDGE_AUTO
from relay.core.backoff import Backoff
from relay.core.connect_error import classify, describe
from relay.core.dial import Candidates, Connect, DialPlan, Wait
from relay.core.hedge import ConnectEstimate, HedgeBudget

MS = 0.001


@dataclass(eq=False)
class B:
    name: str


@dataclass
class Group(Candidates[B]):
    """Candidates in a fixed order; `down` ones are never chosen (their gates closed)."""

    backends: list[B]
    down: set[str] = field(default_factory=set)
    gate_opens: float | None = None

    def choose(self, tried: list[B], untried_only: bool = False,
               last_resort: bool = True) -> B | None:
        up = [b for b in self.backends if b.name not in self.down]
        fresh = [b for b in up if b not in tried]
        if fresh:
            return fresh[0]
        if untried_only or not up:
            return None
        return min(up, key=tried.count)  # the one tried least

    def next_gate_opening(self) -> float | None:
        return self.gate_opens

    def can_hedge_from(self, backend: B) -> bool:
        return any(b is not backend for b in self.backends)


A, C = B("a"), B("c")
BACKOFF = Backoff(initial=50 * MS, maximum=1.0, jitter=0.0)


def plan(group: Group, opened: float = 0.0, attempts: int = 4, deadline: float = 5.0,
         connect_timeout: float = 1.0, hedge: float | None = None) -> DialPlan[B]:
    return DialPlan(group, opened, attempts, deadline, connect_timeout, BACKOFF, hedge)


def test_first_attempt_goes_to_the_first_candidate_bounded_by_connect_timeout():
    step = plan(Group([A, C])).next(now=10 * MS)
    assert isinstance(step, Connect) and step.backend is A
    assert step.until == 10 * MS + 1.0


def test_an_untried_candidate_is_tried_at_once_then_backoff_before_a_retry():
    p = plan(Group([A, C]))
    assert p.next(0.0).backend is A  # type: ignore[union-attr]
    step = p.failed(2 * MS, random.Random(1))
    assert isinstance(step, Connect) and step.backend is C  # no wait for an untried one
    step = p.failed(4 * MS, random.Random(1))
    assert isinstance(step, Wait) and step.until == 4 * MS + 50 * MS  # tried both: back off
    step = p.next(54 * MS)
    assert isinstance(step, Connect)
    step = p.failed(60 * MS, random.Random(1))
    assert isinstance(step, Wait) and abs(step.until - (60 * MS + 100 * MS)) < 1e-9  # doubled


def test_attempts_are_bounded():
    p = plan(Group([A, C]), attempts=2)
    p.next(0.0)
    assert isinstance(p.failed(MS, random.Random(1)), Connect)
    assert p.failed(2 * MS, random.Random(1)) is None  # no_backend


def test_no_wait_that_ends_past_the_deadline():
    p = plan(Group([A]), opened=0.0, deadline=30 * MS)
    p.next(0.0)
    assert p.failed(10 * MS, random.Random(1)) is None  # 10 + 50 ms > 30 ms


def test_a_connect_never_outlives_the_deadline():
    p = plan(Group([A]), opened=0.0, deadline=200 * MS, connect_timeout=1.0)
    step = p.next(150 * MS)
    assert isinstance(step, Connect) and abs(step.until - 200 * MS) < 1e-9
    late = plan(Group([A]), opened=0.0, deadline=200 * MS).next(300 * MS)
    assert isinstance(late, Connect) and late.until > 300 * MS  # never a timer in the past


def test_client_is_held_while_every_gate_is_closed_if_one_opens_within_the_deadline():
    group = Group([A], down={"a"}, gate_opens=400 * MS)
    step = plan(group, deadline=1.0).next(100 * MS)
    assert isinstance(step, Wait) and step.until == 400 * MS
    assert plan(group, deadline=300 * MS).next(100 * MS) is None  # opens too late
    group.gate_opens = None
    assert plan(group).next(100 * MS) is None


def test_hedge_after_fixed_auto_off_and_once_per_dial():
    group = Group([A, C])
    assert plan(group, hedge=None).hedge_after(A, ConnectEstimate()) is None
    assert plan(group, hedge=20 * MS).hedge_after(A, ConnectEstimate()) == 20 * MS
    estimate = ConnectEstimate()
    estimate.observe(2 * MS)
    auto = plan(group, hedge=HEDGE_AUTO).hedge_after(A, estimate)
    assert auto == estimate.hedge_after(1.0)
    assert plan(Group([A]), hedge=20 * MS).hedge_after(A, ConnectEstimate()) is None  # alone
    p = plan(group, hedge=20 * MS)
    p.next(0.0)
    target = p.hedge_target(A, HedgeBudget(limit=1))
    assert target is C
    p.hedging(C)
    assert p.hedge_after(A, ConnectEstimate()) is None
    assert p.hedge_target(A, HedgeBudget(limit=1)) is None
    assert p.tried == [A, C]


def test_no_hedge_beyond_the_budget_or_to_the_same_backend():
    p = plan(Group([A, C]), hedge=20 * MS)
    p.next(0.0)
    full = HedgeBudget(limit=1)
    full.started()
    assert p.hedge_target(A, full) is None
    q = plan(Group([A]), hedge=20 * MS)
    q.next(0.0)
    assert q.hedge_target(A, HedgeBudget(limit=4)) is None


def test_one_text_per_errno_for_sessions_hedges_and_checks():
    assert classify(errno.ECONNREFUSED) == "refused"
    assert describe(errno.ECONNREFUSED) == ("refused", "Connection refused",
                                            "refused: Connection refused")
    assert describe(errno.ETIMEDOUT)[2] == "timeout: Connection timed out"
    assert describe(errno.EACCES) == ("other", "Permission denied", "Permission denied")
