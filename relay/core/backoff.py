"""Exponential backoff with a cap and jitter. Pure: the RNG is passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: float = 0.2  # each delay is scaled by a factor in [1 - jitter, 1 + jitter]

    def base(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0 = the first retry), without jitter."""
        if attempt <= 0 or self.initial <= 0 or self.multiplier <= 1.0:
            return min(self.initial, self.maximum)
        try:
            return min(self.initial * self.multiplier ** attempt, self.maximum)
        except OverflowError:  # a huge attempt number: long past the cap
            return self.maximum

    def delay(self, attempt: int, rng: random.Random) -> float:
        """base(attempt) with jitter; never negative, never above maximum * (1 + jitter)."""
        base = self.base(attempt)
        if self.jitter:
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, base)
