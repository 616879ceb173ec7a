"""Choosing a backend within a tier: first, round_robin (smooth weighted), least_conn.

Pure: balancers see backend positions, weights and active session counts, never sockets.
``order`` ranks the candidates for one new session: the first is tried first and
the rest are the fall-backs for retries.
"""

from __future__ import annotations

from collections.abc import Sequence

from mypy_extensions import mypyc_attr


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled: tests subclass it (test_candidates)
class Balancer:
    def order(self, candidates: Sequence[int], weights: Sequence[int],
              active: Sequence[int]) -> list[int]:
        """Candidates (positions into weights/active) in the order to try them."""
        raise NotImplementedError


class First(Balancer):
    """Always the first available backend in configuration order."""

    def order(self, candidates: Sequence[int], weights: Sequence[int],
              active: Sequence[int]) -> list[int]:
        return sorted(candidates)


class RoundRobin(Balancer):
    """Smooth weighted round robin (as in nginx): weight 3 vs 1 gives a a b a a a b a, not a a a b."""

    def __init__(self) -> None:
        self._current: dict[int, int] = {}

    def order(self, candidates: Sequence[int], weights: Sequence[int],
              active: Sequence[int]) -> list[int]:
        if not candidates:
            return []
        current = self._current
        total = 0
        best = -1
        for i in candidates:
            current[i] = current.get(i, 0) + weights[i]
            total += weights[i]
            if best < 0 or current[i] > current[best]:
                best = i
        current[best] -= total
        rest = sorted((i for i in candidates if i != best), key=lambda i: -current[i])
        return [best, *rest]


class LeastConn(Balancer):
    """Fewest active sessions per unit of weight; ties rotate so equal backends share the load."""

    def __init__(self) -> None:
        self._turn = 0

    def order(self, candidates: Sequence[int], weights: Sequence[int],
              active: Sequence[int]) -> list[int]:
        if not candidates:
            return []
        n = len(candidates)
        self._turn = (self._turn + 1) % n
        rotated = [candidates[(k + self._turn) % n] for k in range(n)]
        return sorted(rotated, key=lambda i: active[i] / weights[i])  # stable: ties keep rotation


def make_balancer(policy: str) -> Balancer:
    if policy == "first":
        return First()
    if policy == "round_robin":
        return RoundRobin()
    if policy == "least_conn":
        return LeastConn()
    raise ValueError(f"unknown balance policy {policy!r}")
