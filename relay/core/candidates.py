"""Which backends a new session tries, in order, and which one a retry takes. Pure.

Order: the serving tier's available backends in balance order, then available
backends of the higher tiers (a failed connect moves the session on at once),
then available backends of lower tiers still waiting for failback. If nothing
is available, every backend that is not drained or in maintenance, lowest tier
first: health may be wrong, and trying costs less than refusing the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def next_attempt(order: Sequence[int], tried: Sequence[int]) -> int | None:
    """The first candidate not tried yet; when all were tried, the one tried longest ago
    (with a single candidate that is itself again). None when there is no candidate."""
    if not order:
        return None
    for position in order:
        if position not in tried:
            return position
    last_tried = {position: i for i, position in enumerate(tried)}
    return min(order, key=lambda position: last_tried[position])
