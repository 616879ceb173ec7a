"""Which backends a new session tries, in order, and which one a retry takes. Pure.

Order: the serving tier's available backends in balance order, then available
backends of the higher tiers (a failed connect moves the session on at once),
then available backends of lower tiers still waiting for failback. If nothing
is available, every backend that is not drained or in maintenance, lowest tier
first: health may be wrong, and trying costs less than refusing the client. But
such a last-resort try passes a per-backend gate that opens once per backoff step
group-wide, so with every backend down a flood of clients costs at most one connect
per backend per step, not `retry.attempts` per client.

Retry order: a candidate the session has not tried yet is tried at once; the
backoff applies only before trying again a backend the session already tried.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from relay.core.backoff import Backoff
from relay.core.balance import Balancer


@dataclass(frozen=True)
class BackendView:
    tier: int
    weight: int
    active: int
    available: bool  # up, ready, not suspect
    admitting: bool  # admin state ready (drain and maint take no new sessions)


def candidate_order(backends: Sequence[BackendView], serving: int | None,
                    balancer: Balancer) -> list[int]:
    weights = [b.weight for b in backends]
    active = [b.active for b in backends]
    tiers = sorted({b.tier for b in backends})
    if serving is not None:
        tiers = ([serving] + [t for t in tiers if t > serving] + [t for t in tiers if t < serving])
    order: list[int] = []
    for tier in tiers:
        positions = [i for i, b in enumerate(backends) if b.tier == tier and b.available]
        order += balancer.order(positions, weights, active) if positions else []
    if order:
        return order
    for tier in sorted({b.tier for b in backends}):
        positions = [i for i, b in enumerate(backends) if b.tier == tier and b.admitting]
        order += sorted(positions)
    return order


def next_attempt(order: Sequence[int], tried: Sequence[int],
                 untried_only: bool = False) -> int | None:
    """The first candidate not tried yet; when all were tried, the one tried longest ago
    (with a single candidate that is itself again), or None with `untried_only` (the
    session waits a backoff step first). None when there is no candidate."""
    if not order:
        return None
    for position in order:
        if position not in tried:
            return position
    if untried_only:
        return None
    last_tried = {position: i for i, position in enumerate(tried)}
    return min(order, key=lambda position: last_tried[position])


class LastResortGate:
    """One backend's gate for last-resort connects (tried although not available).

    Open at first; a connect through it closes it for one backoff step, whose length
    grows with the backend's consecutive connect failures and starts again from the
    first step after a success."""

    __slots__ = ("failures", "opens_at")

    def __init__(self) -> None:
        self.failures = 0  # consecutive connect failures of this backend
        self.opens_at = 0.0

    def is_open(self, now: float) -> bool:
        return now >= self.opens_at

    def take(self, now: float, backoff: Backoff, rng: random.Random) -> bool:
        """A last-resort connect may go now (True); the gate closes for one step."""
        if now < self.opens_at:
            return False
        self.opens_at = now + backoff.delay(self.failures, rng)
        return True

    def failed(self) -> None:
        self.failures += 1

    def succeeded(self) -> None:
        self.failures = 0
        self.opens_at = 0.0
